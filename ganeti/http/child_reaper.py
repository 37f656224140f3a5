"""Reaping the daemon's forgotten child processes, as Ganeti 3.2's server does.

Ganeti 3.2's C{HttpServer.Start()} starts a thread that collects every
exited child of the daemon once a second: its threaded server left the main
loop's SIGCHLD handling behind, and its node daemon forks processes it never
waits for, which would otherwise stay zombies.  Servers made with the 3.2
signature do the same here, with one difference: Ganeti's thread calls
C{waitpid(-1)}, which also takes the exit status of a child that other code
is about to wait for (C{subprocess} then reports 0 for a command that
failed).  This reaper only takes a child that has stayed unreaped for
L{GRACE} seconds after it exited: whoever waits for a child gets it as soon
as it exits, and one left that long is one nobody is waiting for.

It looks with C{waitid(WNOWAIT)}, which shows one exited child without
reaping it; the next one shows once that one is gone.
"""

import logging
import os
import threading
import time

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
  waiting = None
  while not stop.wait(INTERVAL):
    try:
      waiting = ReapForgotten(waiting)
    except Exception:  # pylint: disable=broad-except
      logging.exception("Reaping child processes failed")


def ReapForgotten(waiting=None, now=None):
  """Reap the exited children that have waited L{GRACE} seconds.

  @param waiting: what the previous call returned
  @param now: the time (C{time.monotonic()}), for tests
  @return: C{(pid, since)} of the exited child still in its grace period,
      to pass to the next call, or None
  """
  now = time.monotonic() if now is None else now
  while True:
    try:
      exited = os.waitid(os.P_ALL, 0,
                         os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
      return None  # no children at all
    if exited is None:
      return None  # none has exited
    if waiting is None or waiting[0] != exited.si_pid:
      return (exited.si_pid, now)
    if now - waiting[1] < GRACE:
      return waiting
    try:
      (pid, status) = os.waitpid(exited.si_pid, os.WNOHANG)
    except ChildProcessError:
      pid = 0  # its owner was quicker
    if pid:
      logging.info("Reaped child process %d (exit status %d), which nobody"
                   " waited for", pid, os.waitstatus_to_exitcode(status))
    waiting = None
