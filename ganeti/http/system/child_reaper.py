"""Reaping the daemon's forgotten child processes, as Ganeti 3.2's server does.

Ganeti 3.2's C{HttpServer.Start()} starts a thread that collects every
exited child of the daemon once a second: its threaded server left the main
loop's SIGCHLD handling behind, and its node daemon forks processes it never
waits for, which would otherwise stay zombies.  Servers made with the 3.2
signature do the same here, more carefully: Ganeti's thread calls
C{waitpid(-1)}, which also takes the exit status of a child that other code
is about to collect (C{subprocess} then reports 0 for a command that
failed).  This reaper leaves alone

  - a child that a live C{subprocess.Popen} still owns (its C{wait()} or
    C{communicate()} may come late: a command that left a background
    process holding its output is waited for only once that one is done);
  - any child for L{GRACE} seconds after it exited.

A look costs one C{waitid(WNOWAIT)}, which tells whether any child has
exited without reaping it; only then are the exited children listed, from
C{/proc}.
"""

import gc
import logging
import os
import subprocess
import threading
import time

from ganeti.http.system import process_identity

#: Seconds an exited child is left to whoever started it.
GRACE = 10.0

#: Seconds between two looks.
INTERVAL = 1.0

_lock = threading.Lock()
_holders = 0
_stop = None


def Hold():
  """Run the reaper (one thread for the process) until every holder has
  let go; return the function that lets go of this hold (once)."""
  global _holders, _stop  # pylint: disable=global-statement
  with _lock:
    _holders += 1
    if _holders == 1:
      _stop = threading.Event()
      threading.Thread(target=_Run, args=(_stop, ), name="ChildReaper",
                       daemon=True).start()
  released = []

  def _Release():
    global _holders, _stop  # pylint: disable=global-statement
    with _lock:
      if released:
        return
      released.append(True)
      _holders -= 1
      if _holders == 0:
        _stop.set()
        _stop = None
  return _Release


def RunInForkedChild():
  """Reap this process's own forgotten children, in a process just forked
  (threads do not survive a fork, and the parent's hold is not ours)."""
  global _lock, _holders, _stop  # pylint: disable=global-statement
  (_lock, _holders, _stop) = (threading.Lock(), 0, None)
  Hold()


def _Run(stop):
  exited_since = {}
  while not stop.wait(INTERVAL):
    try:
      ReapForgotten(exited_since)
    except Exception:  # pylint: disable=broad-except
      logging.exception("Reaping child processes failed")


def ReapForgotten(exited_since, now=None):
  """Reap the exited children that are forgotten: not owned by a live
  C{subprocess.Popen}, and exited at least L{GRACE} seconds ago.

  @param exited_since: C{{pid: when it was first seen exited}}, kept from
      one call to the next (updated here)
  @param now: the time (C{time.monotonic()}), for tests
  @return: the pids reaped
  """
  now = time.monotonic() if now is None else now
  try:
    any_exited = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
  except ChildProcessError:
    any_exited = None  # no children at all
  if any_exited is None:
    exited_since.clear()
    return []
  exited = _ExitedChildren() | {any_exited.si_pid}
  for pid in set(exited_since) - exited:
    del exited_since[pid]  # collected by its owner
  due = [pid for pid in exited
         if now - exited_since.setdefault(pid, now) >= GRACE]
  if not due:
    return []
  owned = _PopenPids()
  reaped = []
  for pid in due:
    if pid in owned:
      continue
    try:
      (reaped_pid, status) = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
      reaped_pid = 0  # its owner was quicker
    del exited_since[pid]
    if reaped_pid:
      logging.info("Reaped child process %d (exit status %d), which nobody"
                   " waited for", pid, os.waitstatus_to_exitcode(status))
      reaped.append(pid)
  return reaped


def _ExitedChildren():
  """The pids of this process's children that have exited (zombies)."""
  me = os.getpid()
  pids = set()
  for name in os.listdir("/proc"):
    if not name.isdigit():
      continue
    try:
      fields = process_identity.StatFields(int(name))
    except OSError:
      continue  # gone meanwhile
    if fields[0] == b"Z" and int(fields[1]) == me:
      pids.add(int(name))
  return pids


def _PopenPids():
  """The pids of children that live C{subprocess.Popen} objects have not
  collected yet."""
  return {obj.pid for obj in gc.get_objects()
          if isinstance(obj, subprocess.Popen) and obj.returncode is None}
