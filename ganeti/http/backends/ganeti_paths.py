"""Ganeti's directories on this node, found the way Ganeti finds them.

Ganeti 3.0's paths (its C{pathutils}, and C{daemon-util}'s
C{shell-env-init}) are its build-time directories (as Debian builds it:
C{sysconfdir} C{/etc}, C{localstatedir} C{/var}) under the node's root
directory C{$GANETI_ROOTDIR} when that is set (Ganeti's virtual clusters,
C{vcluster.AddNodePrefix}); its daemons and C{daemon-util} take it from
their environment.  The daemon that uses a file and C{ganeti-http}, which
reads or edits it, both ask this module, so they agree on where it is.
"""

import os

#: The variable naming the node's root directory (Ganeti's name).
ENV_ROOTDIR = "GANETI_ROOTDIR"
#: Ganeti's C{sysconfdir} as Debian builds it.
SYSCONFDIR = "/etc"
#: Ganeti's C{localstatedir} as Debian builds it.
LOCALSTATEDIR = "/var"


def _UnderRoot(directory, relative, environ):
  root = environ.get(ENV_ROOTDIR, "").rstrip("/")
  return os.path.normpath("%s%s/%s" % (root, directory, relative))


def SysConfPath(relative, environ=os.environ):
  """C{relative} (such as C{"default/ganeti"}) under Ganeti's system
  configuration directory on this node.

  >>> SysConfPath("default/ganeti", {"GANETI_ROOTDIR": "/srv/node1/"})
  '/srv/node1/etc/default/ganeti'
  """
  return _UnderRoot(SYSCONFDIR, relative, environ)


def LocalStatePath(relative, environ=os.environ):
  """C{relative} (such as C{"run/ganeti"}) under Ganeti's local state
  directory on this node.

  >>> LocalStatePath("run/ganeti", {"GANETI_ROOTDIR": "/srv/node1/"})
  '/srv/node1/var/run/ganeti'
  """
  return _UnderRoot(LOCALSTATEDIR, relative, environ)


def RunDir(environ=os.environ):
  """Ganeti's run directory, where its daemons keep their pid files."""
  return LocalStatePath("run/ganeti", environ)


def LogDir(environ=os.environ):
  """Ganeti's log directory, where its daemons write their logs."""
  return LocalStatePath("log/ganeti", environ)
