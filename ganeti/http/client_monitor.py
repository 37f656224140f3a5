"""How the HTTPS client shows its unfinished requests to Ganeti's lock monitor."""

import threading


class SharedLock(object):
  """A lock owned either by one thread exclusively or by many sharers.

  Not reentrant.  Waiting exclusive acquirers keep new sharers out.
  """

  def __init__(self):
    self._cond = threading.Condition(threading.Lock())
    self._exclusive_owner = None
    self._sharers = set()
    self._exclusive_waiting = 0

  def _IsFree(self):
    return self._exclusive_owner is None and not self._sharers

  def _CanShare(self):
    return self._exclusive_owner is None and not self._exclusive_waiting

  def acquire(self, shared=0):
    """Acquire the lock, shared if C{shared} is true, else exclusively."""
    me = threading.current_thread()
    with self._cond:
      assert self._exclusive_owner is not me and me not in self._sharers, \
        "Lock is already held by this thread"
      if shared:
        self._cond.wait_for(self._CanShare)
        self._sharers.add(me)
      else:
        self._exclusive_waiting += 1
        try:
          self._cond.wait_for(self._IsFree)
        finally:
          # Sharers held back by this waiter may go on if it gave up
          self._exclusive_waiting -= 1
          self._cond.notify_all()
        self._exclusive_owner = me
    return True

  def release(self):
    """Release the lock held by the current thread in either mode."""
    me = threading.current_thread()
    with self._cond:
      if self._exclusive_owner is me:
        self._exclusive_owner = None
      else:
        assert me in self._sharers, "Cannot release a lock not held"
        self._sharers.remove(me)
      self._cond.notify_all()

  def is_owned(self, shared=-1):
    """Tell whether the current thread holds the lock.

    @param shared: negative for either mode, 0 for exclusive, positive for
      shared
    """
    me = threading.current_thread()
    with self._cond:
      if shared < 0:
        return self._exclusive_owner is me or me in self._sharers
      if shared == 0:
        return self._exclusive_owner is me
      return me in self._sharers


class NoOpRequestMonitor(object):
  """Stands in for L{PendingRequestMonitor} when nobody watches."""

  @staticmethod
  def acquire(*_args, **_kwargs):
    pass

  release = acquire
  Disable = acquire


class PendingRequestMonitor(object):
  """Shows a thread's unfinished requests to Ganeti's lock monitor.

  The lock monitor calls L{GetLockInfo} from its own thread, so finishing a
  request happens under this object's lock in exclusive mode.
  """

  def __init__(self, owner, pending_fn):
    """Set up the monitor.

    @type owner: threading.Thread
    @param owner: thread processing the requests
    @param pending_fn: returns the L{_PendingRequest} objects not yet done
    """
    self._owner = owner
    self._pending_fn = pending_fn
    self._lock = SharedLock()
    self.acquire = self._lock.acquire
    self.release = self._lock.release

  def Disable(self):
    """Stop reporting requests; called once all are done."""
    self._lock.acquire(shared=0)
    try:
      self._pending_fn = None
    finally:
      self._lock.release()

  def GetLockInfo(self, requested):  # pylint: disable=unused-argument
    """Describe the pending requests as lock monitor entries.

    @param requested: the fields asked for (ignored; all are given)
    @return: list of C{(name, None, [owner thread name], None)}, with names
      C{rpc/<nicename>} or C{rpc/<host><path>}
    """
    self._lock.acquire(shared=1)
    try:
      if not self._pending_fn:
        return []
      owner_name = self._owner.name
      result = []
      for pending in self._pending_fn():
        req = pending.GetCurrentRequest()
        if req.nicename is None:
          name = "%s%s" % (req.host, req.path)
        else:
          name = req.nicename
        result.append(("rpc/%s" % name, None, [owner_name], None))
      return result
    finally:
      self._lock.release()
