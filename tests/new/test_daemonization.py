"""The fastcgi backend started as Ganeti 3.0 starts its daemons: forked
worker processes must not keep the daemonization pipe open (the starting
parent, C{daemon-util start}, waits for its end-of-file)."""

import json
import os
import signal
import subprocess
import sys

from tests.new.daemonized import WAIT
from tests.new.lighttpd_helpers import REPO, Alive, WaitFor


def _Children(pid):
  with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
    return [int(child) for child in handle.read().split()]


def test_start_returns_with_worker_processes(tmp_path):
  env = dict(os.environ, GANETI_HTTP_BACKEND="fastcgi",
             GANETI_HTTP_FASTCGI_PROCESSES="2",
             GANETI_HTTP_BACKEND_CONFIG=str(tmp_path / "none"),
             PYTHONPATH=REPO)
  starter = subprocess.run([sys.executable, "-m", "tests.new.daemonized",
                            str(tmp_path)], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, universal_newlines=True,
                           timeout=WAIT + 30)
  info = json.loads((tmp_path / "daemon.json").read_text())
  try:
    workers = [pid for pid in _Children(info["pid"])
               if "lighttpd" not in open("/proc/%d/cmdline" % pid).read()
               and "/bin/sh" not in open("/proc/%d/cmdline" % pid).read()]
    assert len(workers) == 2, workers
    assert starter.returncode == 0, (starter.stdout,
                                     (tmp_path / "daemon.log").read_text())
  finally:
    os.kill(info["pid"], signal.SIGTERM)
    WaitFor(lambda: not Alive(info["pid"]), timeout=60)


def test_a_forked_child_keeps_only_what_it_needs(tmp_path):
  """Pipes and sockets go (as /dev/null, their numbers stay taken); the
  kept socket, the log file and 0-2 stay."""
  import logging
  import socket
  from ganeti.http.system import descriptors
  (rpipe, wpipe) = os.pipe()
  (kept, other) = socket.socketpair()
  log = logging.FileHandler(str(tmp_path / "log"))
  logging.getLogger("test-descriptors").addHandler(log)
  try:
    pid = os.fork()
    if pid == 0:
      status = 1
      try:
        descriptors.ReleaseInherited([kept.fileno()])
        released = os.readlink("/proc/self/fd/%d" % wpipe) == os.devnull
        kept.sendall(b"kept")
        logging.getLogger("test-descriptors").error("logged")
        status = 0 if released else 2
      finally:
        os._exit(status)  # pylint: disable=protected-access
    assert os.waitpid(pid, 0)[1] == 0
    assert other.recv(4) == b"kept"
    log.flush()
    assert (tmp_path / "log").read_text() == "logged\n"
  finally:
    logging.getLogger("test-descriptors").removeHandler(log)
    log.close()
    os.close(rpipe)
    kept.close()
    other.close()
