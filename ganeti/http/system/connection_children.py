"""One child process per connection, as Ganeti 3.0 and 3.1's server has.

Ganeti 3.0/3.1's C{HttpServer} forks a child for each connection it
accepts (at most C{max_clients} at once) and never waits for one when the
daemon stops: a stop returns at once, and an RPC in flight finishes in its
child and returns its result.  L{ConnectionChildren} does the same for a
server that accepts connections (the legacy backend's TCP connections, the
fastcgi backend's FastCGI ones).
"""

import logging
import os
import threading
import time

from ganeti.http.system import forked_child

#: How often L{ConnectionChildren.Serve} looks for a free slot (seconds).
_POLL_INTERVAL = 0.05


class ConnectionChildren(object):
  """Serves connections in forked children, at most C{limit} at once.

  @param limit: children at once; a connection beyond waits for one to exit
  """

  def __init__(self, limit):
    self._limit = limit
    self._pids = set()
    self._lock = threading.Lock()

  def Serve(self, connection, serve):
    """Fork a child that runs C{serve()} and exits; it keeps C{connection}
    and lets go of the daemon's other descriptors (L{forked_child.Fork}).

    Waits until fewer than C{limit} children run.  The caller closes its
    own copy of C{connection}.
    """
    while self.Collect() >= self._limit:
      time.sleep(_POLL_INTERVAL)
    pid = forked_child.Fork(lambda _: serve(), keep=[connection],
                            name="Connection process")
    with self._lock:
      self._pids.add(pid)

  def Collect(self):
    """Reap the children that exited; return how many still run."""
    with self._lock:
      return self._CollectLocked()

  def _CollectLocked(self):
    for pid in list(self._pids):
      try:
        done = os.waitpid(pid, os.WNOHANG)[0]
      except ChildProcessError:
        done = pid  # reaped by someone else
      if done:
        self._pids.discard(pid)
    return len(self._pids)

  def Release(self):
    """Stop tracking the children: those still serving finish on their own
    and exit (whoever is their parent then reaps them); return their pids."""
    with self._lock:
      self._CollectLocked()
      (left, self._pids) = (frozenset(self._pids), set())
    if left:
      logging.info("%d connection process(es) still serving (%s); they exit"
                   " once their requests are answered", len(left),
                   ", ".join(map(str, sorted(left))))
    return left
