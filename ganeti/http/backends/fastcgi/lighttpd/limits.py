"""How many file descriptors a lighttpd started by this process can have.

lighttpd 1.4 sets its own RLIMIT_NOFILE to C{server.max-fds}: soft and hard
limit when it runs as root, otherwise the soft limit only, and only up to
the hard limit it inherited.  Raising a hard limit needs CAP_SYS_RESOURCE,
which root lacks in some containers; lighttpd then logs "setrlimit():
Operation not permitted" and falls back to its soft limit, often far
fewer descriptors than its default.  So C{max-fds} is what lighttpd can
really reach (docs/lighttpd.md, "Limits").
"""

import os
import resource

from ganeti.http.backends.fastcgi.lighttpd import config

#: The capability's bit in /proc/PID/status's CapEff (linux/capability.h).
_CAP_SYS_RESOURCE = 24


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
  """The C{max_fds} for a lighttpd this process starts: L{config.MAX_FDS},
  or less if lighttpd could not raise its limit that far."""
  hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
  if hard == resource.RLIM_INFINITY or _MayRaiseHardLimit():
    return config.MAX_FDS
  return min(config.MAX_FDS, hard)
