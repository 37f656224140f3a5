"""shims/rolling_migration.py's command line, run as a subprocess.

The procedure itself runs against a real three-node cluster in
tests/cluster/test_migration.py (make migration-test); here only what
needs no cluster: --dry-run prints the commands in order and runs none,
and a wrong STEP is a usage error.
"""

import os
import socket
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                      "shims", "rolling_migration.py")


def _Run(*args):
  return subprocess.run([sys.executable, SCRIPT] + list(args),
                        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, universal_newlines=True,
                        timeout=60)


def test_dry_run_prints_each_command_in_order():
  result = _Run("--dry-run", "--verify-ignore", "ENODESETUP",
                "other-node.example.com:noded=fastcgi",
                "%s:ganeti-noded,rapi=legacy" % socket.gethostname())
  assert result.returncode == 0, result.stderr
  commands = [line[2:] for line in result.stdout.splitlines()
              if line.startswith("+ ")]
  remote = "gnt-cluster command -n other-node.example.com "
  restart = ("/usr/lib/ganeti/daemon-util stop ganeti-%s &&"
             " /usr/lib/ganeti/daemon-util start ganeti-%s")
  verify = "sh -c 'gnt-cluster verify --ignore-errors=ENODESETUP'"
  assert commands == [
    remote + "'ganeti-http status --json noded'",
    remote + "'ganeti-http set noded fastcgi && %s'" % (
      restart % ("noded", "noded")),
    remote + "'/usr/lib/ganeti/daemon-util check ganeti-noded'",
    remote + "'ganeti-http status --json noded'",
    verify,
    "sh -c 'ganeti-http status --json noded rapi'",
    "sh -c 'ganeti-http set noded legacy && %s'" % (
      restart % ("noded", "noded")),
    "sh -c 'ganeti-http set rapi legacy && %s'" % (
      restart % ("rapi", "rapi")),
    "sh -c '/usr/lib/ganeti/daemon-util check ganeti-noded'",
    "sh -c '/usr/lib/ganeti/daemon-util check ganeti-rapi'",
    "sh -c 'ganeti-http status --json noded rapi'",
    verify,
  ]


def test_restart_only_needs_no_ganeti_http():
  result = _Run("--dry-run", "node3.example.com:noded=restart")
  assert result.returncode == 0, result.stderr
  assert "ganeti-http" not in result.stdout
  assert "daemon-util stop ganeti-noded" in result.stdout


def test_wrong_steps_are_usage_errors():
  for step in ("node3", "node3:confd=fastcgi", "node3:noded=fast",
               "node3:noded"):
    result = _Run("--dry-run", step)
    assert result.returncode == 2, (step, result.stdout)
    assert "STEP" in result.stderr or "unknown" in result.stderr, step
