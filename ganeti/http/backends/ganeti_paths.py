"""Ganeti's directories on this node, found the way Ganeti finds them.

Ganeti 3.0's paths (its C{pathutils}) are its build-time directories (as
Debian builds it: C{localstatedir} is C{/var}) under the node's root
directory C{$GANETI_ROOTDIR} when that is set (Ganeti's virtual clusters,
C{vcluster.AddNodePrefix}); its daemons and C{daemon-util} take it from
their environment.  The daemon that publishes a file and C{ganeti-http},
which reads it, both ask this module, so they agree on where it is.
"""

import os

#: The variable naming the node's root directory (Ganeti's name).
ENV_ROOTDIR = "GANETI_ROOTDIR"
#: Ganeti's C{localstatedir} as Debian builds it.
LOCALSTATEDIR = "/var"


def LocalStatePath(relative, environ=os.environ):
  """C{relative} (such as C{"run/ganeti"}) under Ganeti's local state
  directory on this node.

  >>> LocalStatePath("run/ganeti", {"GANETI_ROOTDIR": "/srv/node1/"})
  '/srv/node1/var/run/ganeti'
  """
  root = environ.get(ENV_ROOTDIR, "").rstrip("/")
  return os.path.normpath("%s%s/%s" % (root, LOCALSTATEDIR, relative))


def RunDir(environ=os.environ):
  """Ganeti's run directory, where its daemons keep their pid files."""
  return LocalStatePath("run/ganeti", environ)
