"""The private directories of fastcgi-backend servers.

Each server keeps its FastCGI socket, lighttpd's configuration, pid file
and logs in a directory of its own, C{ganeti-http-XXXXXXXX} under the
runtime directory (C{/run/ganeti-http} for root), and removes it when it
stops.  A daemon killed without stopping leaves its directory behind (its
lighttpd is ended by the lifeline), so each directory names the process
that made it in an C{owner} file (pid and start time), and the next server
started with the same runtime directory removes those whose owner has
exited.
"""

import logging
import os
import shutil
import stat
import tempfile

from ganeti.http.system import process_identity

PREFIX = "ganeti-http-"
_OWNER_FILE = "owner"


def Create(runtime_dir):
  """Make a new private directory in C{runtime_dir} (None: the system's
  temporary directory), owned by this process; return its path."""
  path = tempfile.mkdtemp(prefix=PREFIX, dir=runtime_dir)
  try:
    start_time = process_identity.ParentAndStartTime(os.getpid())[1]
    with open(os.path.join(path, _OWNER_FILE), "x") as handle:
      handle.write("%d %d\n" % (os.getpid(), start_time))
  except BaseException:
    shutil.rmtree(path, ignore_errors=True)
    raise
  return path


def RemoveAbandoned(runtime_dir):
  """Remove the directories in C{runtime_dir} (None: the system's
  temporary directory) that belong to this user and whose owner process
  has exited; log and return their paths.

  Directories without an owner file (one being created, or not made by
  L{Create}) are left alone.
  """
  if runtime_dir is None:
    runtime_dir = tempfile.gettempdir()
  removed = []
  for name in sorted(os.listdir(runtime_dir)):
    path = os.path.join(runtime_dir, name)
    owner = _Owner(path) if name.startswith(PREFIX) else None
    if owner is None or process_identity.IsRunning(*owner):
      continue
    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path):
      logging.warning("Could not remove %s, left behind by pid %d",
                      path, owner[0])
      continue
    logging.info("Removed %s, left behind by pid %d, which exited without"
                 " stopping its HTTP server", path, owner[0])
    removed.append(path)
  return removed


def _Owner(path):
  """C{(pid, start time)} from the owner file of C{path}, if C{path} is a
  directory of this user with one; else None."""
  try:
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
      return None
    descriptor = os.open(os.path.join(path, _OWNER_FILE),
                         os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(descriptor) as handle:
      (pid, start_time) = handle.read(100).split()
    return (int(pid), int(start_time))
  except (OSError, ValueError):
    return None
