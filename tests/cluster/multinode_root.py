"""The root of a node that runs sshd: the test bed's root plus an ssh server.

Ganeti 3.0 reaches nodes as root with ssh: C{gnt-node add} on a new node,
C{gnt-cluster command} and C{copyfile} on every node, the master too.  So
every node of the three-node cluster and the single-node test bed's node
run C{sshd}; this module builds the same mmdebstrap root with
C{openssh-server} added, cached next to the plain root's tarball (in a
subdirectory, so that neither build deletes the other's tarball).
"""

import os

from tests.cluster import root_image

EXTRA_PACKAGES = ("openssh-server",)

_TESTBED_BUILD_COMMAND = root_image._BuildCommand  # pylint: disable=W0212


def _BuildCommand(target):
  """The test bed's mmdebstrap command with L{EXTRA_PACKAGES} included."""
  command = _TESTBED_BUILD_COMMAND(target)
  return ["%s,%s" % (part, ",".join(EXTRA_PACKAGES))
          if part.startswith("--include=") else part for part in command]


def RootTarball():
  """The cached multi-node root tarball, built first if missing."""
  cache = os.path.join(root_image.CacheDir(), "multinode")
  saved_cache = os.environ.get("GANETI_HTTP_TESTBED_CACHE")
  os.environ["GANETI_HTTP_TESTBED_CACHE"] = cache
  root_image._BuildCommand = _BuildCommand  # pylint: disable=protected-access
  try:
    return root_image.RootTarball()
  finally:
    root_image._BuildCommand = _TESTBED_BUILD_COMMAND  # pylint: disable=W0212
    if saved_cache is None:
      del os.environ["GANETI_HTTP_TESTBED_CACHE"]
    else:
      os.environ["GANETI_HTTP_TESTBED_CACHE"] = saved_cache
