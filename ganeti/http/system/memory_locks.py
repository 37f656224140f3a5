"""Memory locks, which a forked child must take again.

Ganeti 3.0's node daemon locks its memory when it starts
(C{mlockall(MCL_CURRENT | MCL_FUTURE)}, unless started with C{--no-mlock})
so that it keeps answering under memory pressure, and each child it forks
for a connection locks its own memory again before serving (noded passes
C{MlockallRequestExecutor}, whose constructor does it): memory locks are
not inherited across C{fork()} (mlockall(2)).  Our forked children
(L{forked_child.Fork}: FastCGI workers, per-connection processes) do the
same whenever the daemon has its memory locked (L{AllLocked}), whatever
executor class it passed.

A child locks with C{MCL_ONFAULT} (Linux 4.4): the pages it shares with the
daemon stay shared and each is locked when the child first touches it.
Without it, C{MCL_CURRENT} makes the child fault in and copy every page
mapped at the fork, the other threads' unused stacks included: Ganeti 3.0's
single-threaded noded copied 48 MB per connection (17 ms), ours (with its
server threads) 140-280 MB (37-46 ms).  What the child uses is locked all
the same, which is what the lock is for: no swapping under memory pressure.
"""

import ctypes
import logging
import os

#: mlockall()'s flags: lock what is mapped now and what will be ...
_MCL_CURRENT_AND_FUTURE = 1 | 2
#: ... each page once it is touched (C{MCL_ONFAULT}).
_MCL_ONFAULT = 4


def AllLocked():
  """Whether this process called mlockall(): most of its address space is
  locked, not merely a page some library mlock()ed."""
  sizes = {}
  try:
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith(("VmLck:", "VmSize:")):
          (name, value) = line.split()[:2]
          sizes[name] = int(value)
  except (OSError, ValueError):
    return False
  return sizes.get("VmLck:", 0) * 2 >= sizes.get("VmSize:", 1)


def LockAll(name):
  """Lock this process's memory, now and to come, as the daemon's is; a
  failure is logged (naming the process as C{name}), as Ganeti 3.0 logs
  it, and the process goes on."""
  libc = ctypes.CDLL(None, use_errno=True)
  if (libc.mlockall(_MCL_CURRENT_AND_FUTURE | _MCL_ONFAULT) != 0 and
      libc.mlockall(_MCL_CURRENT_AND_FUTURE) != 0):
    logging.warning("%s could not lock its memory as the daemon did: %s",
                    name, os.strerror(ctypes.get_errno()))
