#!/usr/bin/python3
"""Flip a Ganeti cluster's HTTP daemons to another backend, one node at a time.

Run it as root on the master node.  Each STEP names a node, its daemons and
the backend they move to; the steps run in the order given:

    rolling_migration.py node3.example.com:noded=fastcgi \\
                         node2.example.com:noded=fastcgi \\
                         node1.example.com:noded,rapi=fastcgi

For each step the script:

 1. reads what the daemons are configured for now (C{ganeti-http status
    --json} on the node), to roll back to;
 2. runs C{ganeti-http set DAEMON BACKEND} on the node for each daemon,
    then restarts it with Ganeti's own C{daemon-util stop} and C{start};
 3. checks: C{ganeti-http status --json} on the node (each daemon runs the
    new backend, no restart needed, no problem), C{daemon-util check}, and
    C{gnt-cluster verify} on the master (again after a pause if it finds
    an error, see L{Migration.Verify});
 4. on the first failed check, sets the step's daemons back to what they
    ran before, restarts them, checks again, and stops.

A command for another node runs through C{gnt-cluster command -n NODE}
(Ganeti's ssh); a command for this node runs here.  C{--dry-run} prints
every command and runs none; a command that runs longer than C{--timeout}
seconds fails its step.  The backend C{restart} only restarts the
daemons (no C{ganeti-http} needed): the same procedure on a node without
the package, e.g. to compare with stock Ganeti.

Exit status: 0 every step done; 1 a step failed and was rolled back; 2 the
command line is wrong; 3 a step failed and so did its rollback.
"""

import argparse
import json
import re
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

DAEMON_UTIL = "/usr/lib/ganeti/daemon-util"
GANETI_HTTP = "ganeti-http"
BACKENDS = ("legacy", "fastcgi")
RESTART_ONLY = "restart"
#: The daemons serving HTTP, by the name ganeti-http uses, with their
#: program name (daemon-util's).
DAEMONS = {"noded": "ganeti-noded", "rapi": "ganeti-rapi"}

#: gnt-cluster verify runs this often, VERIFY_PAUSE seconds apart, before
#: a step counts as failed (see L{Migration.Verify}).
VERIFY_ATTEMPTS = 3
VERIFY_PAUSE = 10

EXIT_OK = 0
EXIT_ROLLED_BACK = 1
EXIT_USAGE = 2
EXIT_ROLLBACK_FAILED = 3

_RETURN_CODE = re.compile(r"^return code = (-?\d+)$", re.M)


class StepFailed(Exception):
  """A command or a check of a step failed."""


class Step(object):
  """One node's daemons and the backend they move to."""

  def __init__(self, node, daemons, backend):
    self.node = node
    self.daemons = daemons
    self.backend = backend

  def __str__(self):
    return "%s:%s=%s" % (self.node, ",".join(self.daemons), self.backend)


def ParseStep(text):
  """C{NODE:DAEMON[,DAEMON...]=BACKEND} as a L{Step}."""
  match = re.match(r"^([^:=\s]+):([a-z,-]+)=(\w+)$", text)
  if not match:
    raise argparse.ArgumentTypeError(
      "%r is not NODE:DAEMON[,DAEMON...]=BACKEND" % text)
  (node, names, backend) = match.groups()
  daemons = [name[len("ganeti-"):] if name.startswith("ganeti-") else name
             for name in names.split(",")]
  unknown = [name for name in daemons if name not in DAEMONS]
  if unknown:
    raise argparse.ArgumentTypeError("unknown daemon %s (known: %s)"
                                     % (", ".join(unknown),
                                        ", ".join(sorted(DAEMONS))))
  if backend not in BACKENDS + (RESTART_ONLY,):
    raise argparse.ArgumentTypeError("unknown backend %r (known: %s)"
                                     % (backend, ", ".join(
                                       BACKENDS + (RESTART_ONLY,))))
  return Step(node, daemons, backend)


class Runner(object):
  """Runs (or with C{dry_run} prints) commands on the cluster's nodes."""

  def __init__(self, dry_run, timeout=None, out=sys.stdout):
    self.dry_run = dry_run
    self.timeout = timeout
    self.out = out
    self._local_names = {socket.gethostname(), socket.getfqdn(),
                         "localhost"}

  def Say(self, text):
    self.out.write(text + "\n")
    self.out.flush()

  def OnNode(self, node, command):
    """Run shell C{command} on C{node} (None: here, the master);
    C{(exit status, output)}.

    In a dry run the command is printed and C{(0, "")} returned.
    """
    local = node is None or node in self._local_names or \
        node.split(".")[0] in self._local_names
    argv = (["sh", "-c", command] if local else
            ["gnt-cluster", "command", "-n", node, command])
    self.Say("+ %s" % " ".join(shlex.quote(part) for part in argv))
    if self.dry_run:
      return (0, "")
    # A session of its own: on timeout the whole command (ssh included)
    # is killed, or its children would keep the output pipe open.
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT,
                               universal_newlines=True,
                               start_new_session=True)
    try:
      (output, _) = process.communicate(timeout=self.timeout)
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)
      (output, _) = process.communicate()
      return (124, "still running after %s s, killed: %s" % (self.timeout,
                                                             output))
    if local or process.returncode != 0:
      return (process.returncode, output)
    # gnt-cluster command exits 0 whatever the command did; it prints
    # "return code = N" after the command's output.
    codes = _RETURN_CODE.findall(output)
    if not codes:
      return (1, output)
    body = output.split("\n", 2)[-1] if output.startswith("---") else output
    return (int(codes[-1]), _RETURN_CODE.sub("", body))

  def Must(self, node, command):
    """L{OnNode}; raise L{StepFailed} unless it exits 0."""
    (status, output) = self.OnNode(node, command)
    if status != 0:
      errors = [line for line in output.splitlines() if "ERROR" in line]
      raise StepFailed("%s on %s exited with %d: %s"
                       % (command, node or "the master", status,
                          _Tail("\n".join(errors) or output)))
    return output


def _Tail(text, limit=800):
  return " | ".join(text.strip().splitlines())[-limit:]


class Migration(object):
  """The procedure: flip, check, roll back on the first failure."""

  def __init__(self, runner, verify_ignore=()):
    self.runner = runner
    self.verify_command = " ".join(
      ["gnt-cluster", "verify"] +
      ["--ignore-errors=%s" % shlex.quote(code) for code in verify_ignore])

  def ConfiguredBackends(self, step):
    """{daemon: configured backend} on the step's node now."""
    if step.backend == RESTART_ONLY:
      return {}
    output = self.runner.Must(step.node, "%s status --json %s"
                              % (GANETI_HTTP, " ".join(step.daemons)))
    if self.runner.dry_run:
      return {daemon: "PREVIOUS" for daemon in step.daemons}
    return {entry["daemon"]: entry["configured"]["backend"]
            for entry in _StatusEntries(output)}

  def Apply(self, step, backends):
    """Set each daemon's backend (C{backends}: {daemon: backend}) and
    restart it; with L{RESTART_ONLY} only restart.

    The restart is Ganeti's (the one C{ganeti-http set --restart} runs),
    written out because it must also start a daemon a failed start left
    stopped (C{--restart} leaves a stopped daemon alone).
    """
    for daemon in step.daemons:
      program = DAEMONS[daemon]
      restart = "%s stop %s && %s start %s" % (DAEMON_UTIL, program,
                                               DAEMON_UTIL, program)
      if step.backend == RESTART_ONLY:
        self.runner.Must(step.node, restart)
      else:
        self.runner.Must(step.node, "%s set %s %s && %s" % (
          GANETI_HTTP, daemon, backends[daemon], restart))

  def Check(self, step, backends):
    """The checks after a step; raise L{StepFailed} on the first failed."""
    for daemon in step.daemons:
      self.runner.Must(step.node, "%s check %s" % (DAEMON_UTIL,
                                                  DAEMONS[daemon]))
    if step.backend != RESTART_ONLY:
      output = self.runner.Must(step.node, "%s status --json %s"
                                % (GANETI_HTTP, " ".join(step.daemons)))
      if not self.runner.dry_run:
        for entry in _StatusEntries(output):
          _CheckStatus(entry, backends[entry["daemon"]])
    self.Verify()

  def Verify(self):
    """gnt-cluster verify on the master, up to L{VERIFY_ATTEMPTS} times.

    Under load verify can catch an instance between its admin state and
    its state on the node (a startup or shutdown job in progress) and
    report it as an error; an error that stays is reported.
    """
    for attempt in range(1, VERIFY_ATTEMPTS + 1):
      try:
        self.runner.Must(None, self.verify_command)
        return
      except StepFailed as err:
        if attempt == VERIFY_ATTEMPTS:
          raise
        self.runner.Say("!! %s; verifying again in %d s"
                        % (err, VERIFY_PAUSE))
        time.sleep(VERIFY_PAUSE)

  def RunStep(self, step):
    """One step; return an exit status (L{EXIT_OK} when it worked)."""
    self.runner.Say("== step %s" % step)
    previous = self.ConfiguredBackends(step)
    wanted = {daemon: step.backend for daemon in step.daemons}
    try:
      self.Apply(step, wanted)
      self.Check(step, wanted)
    except StepFailed as err:
      self.runner.Say("!! step %s failed: %s" % (step, err))
      if step.backend == RESTART_ONLY:
        return EXIT_ROLLED_BACK
      self.runner.Say("== rollback of %s to %s" % (step, ", ".join(
        "%s=%s" % item for item in sorted(previous.items()))))
      try:
        self.Apply(step, previous)
        self.Check(step, previous)
      except StepFailed as rollback_err:
        self.runner.Say("!! rollback failed: %s" % rollback_err)
        return EXIT_ROLLBACK_FAILED
      self.runner.Say("== rolled back")
      return EXIT_ROLLED_BACK
    self.runner.Say("== step %s done" % step)
    return EXIT_OK

  def Run(self, steps):
    for step in steps:
      status = self.RunStep(step)
      if status != EXIT_OK:
        return status
    return EXIT_OK


def _StatusEntries(output):
  """The per-daemon entries of C{ganeti-http status --json}'s output."""
  start = output.find("{")
  try:
    return json.loads(output[start:])["daemons"]
  except (ValueError, KeyError) as err:
    raise StepFailed("unreadable ganeti-http status output (%s): %s"
                     % (err, _Tail(output)))


def _CheckStatus(entry, backend):
  """A daemon's status entry says it runs C{backend} as configured."""
  name = entry["daemon"]
  running = entry["running"]
  if not running["running"]:
    raise StepFailed("%s does not run" % name)
  if running["backend"] != backend:
    raise StepFailed("%s runs %s, not %s" % (name, running["backend"],
                                             backend))
  if entry["restart_needed"] or entry["problems"]:
    raise StepFailed("%s: %s" % (name, "; ".join(entry["restart_needed"] +
                                                 entry["problems"])))


def main(argv=None):
  parser = argparse.ArgumentParser(
    description=__doc__.split("\n\n")[0],
    epilog="STEP is NODE:DAEMON[,DAEMON...]=BACKEND; DAEMON is %s; BACKEND"
           " is %s, or %s (only restart the daemons)"
           % (" or ".join(sorted(DAEMONS)), " or ".join(BACKENDS),
              RESTART_ONLY))
  parser.add_argument("steps", nargs="+", metavar="STEP", type=ParseStep)
  parser.add_argument("--dry-run", action="store_true",
                      help="print the commands, run none")
  parser.add_argument("--verify-ignore", action="append", default=[],
                      metavar="CODE",
                      help="an error code gnt-cluster verify is to treat as"
                           " a warning (its --ignore-errors), e.g."
                           " ENODESETUP; may be repeated")
  parser.add_argument("--timeout", type=float, default=900,
                      metavar="SECONDS",
                      help="a command that runs longer fails its step"
                           " (default: %(default)s)")
  args = parser.parse_args(argv)
  migration = Migration(Runner(args.dry_run, args.timeout),
                        args.verify_ignore)
  return migration.Run(args.steps)


if __name__ == "__main__":
  sys.exit(main())
