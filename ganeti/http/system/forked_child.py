"""A child process forked from the daemon to serve: worker processes and
per-connection processes start here."""

import logging
import os
import signal
import threading

from ganeti.http.system import child_reaper
from ganeti.http.system import descriptors
from ganeti.http.system import memory_locks


def Fork(run, keep=(), name="Forked process"):
  """Fork a child that runs C{run(stopping)} and exits; return its pid.

  Before C{run}, the child lets go of the daemon's descriptors except
  C{keep} (L{descriptors.ReleaseInherited}), reaps the children its own
  code forgets (L{child_reaper.RunInForkedChild}), sets its signals:
  SIGTERM sets the event C{stopping} (SIGTERM is held back across the
  fork, so that the daemon's handler never runs in the child), SIGINT,
  SIGHUP and SIGCHLD do what they do by default; and locks its memory if
  the daemon had locked its own (L{memory_locks}: as Ganeti 3.0's noded's
  children do; locks are not inherited).  The child exits with
  status 0 when C{run} returns, 1 when it raised (logged with C{name}).

  @param keep: the sockets the child needs
  """
  keep = [sock.fileno() for sock in keep]
  memory_locked = memory_locks.AllLocked()
  mask = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
  try:
    pid = os.fork()
  except BaseException:
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    raise
  if pid:
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    return pid
  status = 1
  try:
    # Ganeti's daemonization pipe among them: its starting parent waits
    # until every copy is closed.
    descriptors.ReleaseInherited(keep)
    child_reaper.RunInForkedChild()
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    for other in (signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
      signal.signal(other, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    if memory_locked:
      memory_locks.LockAll(name)
    run(stopping)
    status = 0
  except BaseException:  # pylint: disable=broad-except
    logging.exception("%s failed", name)
  finally:
    os._exit(status)  # pylint: disable=protected-access
