"""Several forked copies of the daemon, each serving FastCGI connections.

For throughput and for handlers that are not thread-safe: each child runs
a L{listener.FastCgiListener} on the same inherited listening socket.
(flup's own prefork server ignores SIGTERM until the next request arrives
under Python 3, so it is not used.)
"""

import ctypes
import logging
import os
import signal
import threading
import time

from ganeti.http.backends.fastcgi import listener as fastcgi_listener
from ganeti.http.system import forked_child

#: glibc's mallopt() parameter number for the arena limit, and the limit
#: set in forked worker processes (see _LimitMallocArenas).
_M_ARENA_MAX = -8
WORKER_MALLOC_ARENAS = 2

#: A worker process that exits within this many seconds of its start died
#: young: the next restart waits, first this long, then twice as long each
#: time, up to the last delay (seconds).
_SHORT_LIFE = 10.0
_FIRST_RESTART_DELAY = 0.5
_LAST_RESTART_DELAY = 30.0

class ForkedWorkers(object):
  """Several forked processes, each running a L{listener.FastCgiListener}.

  Children accept on the same inherited listening socket; a child whose
  parent died stops accepting and exits.  The parent restarts children that
  die (L{Reap}) and stops them with SIGTERM, which lets each finish the
  requests it is serving.  A child keeps, of the daemon's descriptors, only
  C{keep} and what L{forked_child.Fork} keeps.

  @param make_listener: C{make_listener()} returns the listener a child runs
  @param count: number of processes
  @param keep: the sockets a child needs: the listening socket
      C{make_listener} uses
  """

  def __init__(self, make_listener, count, keep=()):
    self._make_listener = make_listener
    self._count = count
    self._keep = keep
    self._pids = set()
    self._forked_at = {}  # pid -> time.monotonic() of its fork
    # Children that keep dying young are forked again after a growing
    # delay, not in a loop.
    self._restart_delay = 0.0
    self._restart_at = 0.0
    self._lock = threading.Lock()
    self._stopping = threading.Event()
    self._monitor = None

  def Start(self):
    """Fork the children, then watch them in a thread (see L{Reap})."""
    with self._lock:
      self._ForkMissing()
    self._stopping.clear()
    self._monitor = threading.Thread(target=self._Watch,
                                     name="FastCGIWorkerMonitor", daemon=True)
    self._monitor.start()

  def _Watch(self):
    while not self._stopping.wait(fastcgi_listener.POLL_INTERVAL):
      self.Reap()

  def _Fork(self):
    parent = os.getpid()

    def _Run(stopping):
      _LimitMallocArenas()
      self._make_listener().Serve(
        should_continue=lambda: (not stopping.is_set() and
                                 os.getppid() == parent))

    return forked_child.Fork(_Run, keep=self._keep,
                             name="FastCGI worker process")

  def Reap(self):
    """Collect children that exited; restart them unless stopping.

    A child that dies within L{_SHORT_LIFE} seconds of its start doubles
    the wait before the next restart (from L{_FIRST_RESTART_DELAY} up to
    L{_LAST_RESTART_DELAY}); one that lived longer resets it.

    @return: the number of children restarted
    """
    with self._lock:
      now = time.monotonic()
      for pid in list(self._pids):
        if self._stopping.is_set():
          return 0
        try:
          (done, status) = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
          # Someone else reaped it (Ganeti 3.2 runs a reaper thread).
          (done, status) = (pid, -1)
        if done:
          self._pids.discard(pid)
          if now - self._forked_at.pop(pid) < _SHORT_LIFE:
            self._restart_delay = min(
              max(2 * self._restart_delay, _FIRST_RESTART_DELAY),
              _LAST_RESTART_DELAY)
          else:
            self._restart_delay = 0.0
          self._restart_at = now + self._restart_delay
          logging.error("FastCGI worker %d exited (status %d); restarting"
                        " in %.1f s", pid, status, self._restart_delay)
      if self._stopping.is_set() or now < self._restart_at:
        return 0
      try:
        return self._ForkMissing()
      except OSError as err:  # out of processes or memory: try again later
        self._restart_delay = max(self._restart_delay, _FIRST_RESTART_DELAY)
        self._restart_at = now + self._restart_delay
        logging.error("Cannot fork a FastCGI worker (%s); trying again in"
                      " %.1f s", err, self._restart_delay)
        return 0

  def _ForkMissing(self):
    """Fork children until there are C{count}; return how many."""
    forked = 0
    while len(self._pids) < self._count:
      pid = self._Fork()
      self._pids.add(pid)
      self._forked_at[pid] = time.monotonic()
      forked += 1
    return forked

  @property
  def pids(self):
    """Process ids of the running children."""
    return frozenset(self._pids)

  def Stop(self, timeout, kill=True):
    """SIGTERM every child (it stops accepting and finishes the requests
    it serves), wait up to C{timeout} seconds for them to exit; then
    SIGKILL those left, or with C{kill} false leave them to finish on
    their own: they exit when done (see L{listener.FastCgiListener.Serve})
    and whoever is their parent then reaps them."""
    self._stopping.set()
    if self._monitor is not None:
      self._monitor.join()
      self._monitor = None
    with self._lock:
      pids = set(self._pids)
      self._pids.clear()
      self._forked_at.clear()
    for pid in pids:
      _Signal(pid, signal.SIGTERM)
    _WaitForChildren(pids, timeout)
    if pids and not kill:
      logging.info("FastCGI worker(s) %s still serving requests; they exit"
                   " once those are answered", ", ".join(map(str, pids)))
      return
    for pid in pids:
      _Signal(pid, signal.SIGKILL)
    _WaitForChildren(pids, None)


def _LimitMallocArenas():
  """Cap the malloc arenas of this process (glibc; elsewhere a no-op).

  glibc gives each new thread an arena of its own, up to 8 per core, and
  each keeps the big buffers its thread freed: a worker whose threads
  have all moved large bodies grew towards 64 MiB (docs/performance.md).
  The threads of a worker take turns on its GIL anyway, so they gain
  little from arenas of their own.
  """
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return
  mallopt(_M_ARENA_MAX, WORKER_MALLOC_ARENAS)


def _Signal(pid, signum):
  try:
    os.kill(pid, signum)
  except ProcessLookupError:
    pass


def _WaitForChildren(pids, timeout):
  """Reap the children in the set C{pids}, removing them from it, until
  none is left or C{timeout} seconds passed (None: no limit)."""
  deadline = None if timeout is None else time.monotonic() + timeout
  while True:
    for pid in list(pids):
      try:
        done = os.waitpid(pid, os.WNOHANG)[0]
      except ChildProcessError:
        done = pid
      if done:
        pids.discard(pid)
    if not pids or (deadline is not None and time.monotonic() >= deadline):
      return
    time.sleep(fastcgi_listener.POLL_INTERVAL / 4)
