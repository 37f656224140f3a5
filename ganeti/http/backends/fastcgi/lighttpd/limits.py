"""lighttpd's room for connections: its file descriptors and how many of
them it accepts as connections (docs/lighttpd.md, "Limits").

lighttpd 1.4 sets its own RLIMIT_NOFILE to C{server.max-fds}: soft and hard
limit when it runs as root, otherwise the soft limit only, and only up to
the hard limit it inherited.  Raising a hard limit needs CAP_SYS_RESOURCE,
which root lacks in some containers; lighttpd then logs "setrlimit():
Operation not permitted" and falls back to its soft limit, often far
fewer descriptors than its default.  So C{max-fds} is what lighttpd can
really reach (L{ReachableMaxFds}).
"""

import os
import resource

#: The most file descriptors lighttpd 1.4 takes (server.max-fds is an
#: unsigned short).
MAX_FDS = 65535

#: Fewer than this and lighttpd takes 32 anyway (server.c's sanity check).
MIN_FDS = 32

#: Most client connections lighttpd accepts at once: room for 10,000 idle
#: ones from one address and the cluster's own clients, at about 43 KiB of
#: lighttpd's memory each with TLS.
MAX_CONNECTIONS = 16384

#: The capability's bit in /proc/PID/status's CapEff (linux/capability.h).
_CAP_SYS_RESOURCE = 24


def MaxConnections(max_fds):
  """lighttpd's connection limit with C{max_fds} file descriptors: at most
  half of them (lighttpd allows no more; its default is a third), as a
  connection being served holds a second descriptor, to the backend."""
  return min(max_fds // 2, MAX_CONNECTIONS)


def _MayRaiseHardLimit():
  """Whether a lighttpd started by this process may raise its hard limit:
  it tries only as root, and succeeds only with CAP_SYS_RESOURCE."""
  if os.getuid() != 0:
    return False
  try:
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith("CapEff:"):
          return bool((int(line.split()[1], 16) >> _CAP_SYS_RESOURCE) & 1)
  except OSError:
    pass
  return False


def ReachableMaxFds():
  """The C{max_fds} for a lighttpd this process starts: L{MAX_FDS}, or
  less if lighttpd could not raise its limit that far."""
  hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
  if hard == resource.RLIM_INFINITY or _MayRaiseHardLimit():
    return MAX_FDS
  return min(MAX_FDS, hard)
