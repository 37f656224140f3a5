"""The private directories of fastcgi-backend servers.

Each server keeps its FastCGI socket, lighttpd's configuration, pid file
and logs in a directory of its own, C{ganeti-http-XXXXXXXX} under the
runtime directory (C{/run/ganeti-http} for root), and removes it when it
stops.  A daemon killed without stopping leaves its directory behind (its
lighttpd is ended by the lifeline), so each directory names the process
that made it in an C{owner} file (pid and start time), and the next server
started with the same runtime directory removes those whose owner has
exited.  L{PrepareForLighttpd} lays out such a directory for lighttpd, with
the owners and modes its privilege switch needs.
"""

import errno
import grp
import logging
import os
import pwd
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


def PrepareForLighttpd(layout, owner, config_text):
  """Create lighttpd's state directory (see L{StateLayout<config.StateLayout>})
  and its files, and write the configuration C{config_text}.

  @param owner: C{(uid, gid)} lighttpd switches to (L{ResolveOwner}), or
      None

  Without a user to switch to, everything belongs to this process and is
  private to it.  With one (this process being root):

    - the directory and the empty document root are root's, group
      lighttpd's group, mode 0710: lighttpd may pass through, not list,
      and cannot replace the configuration or the pid file;
    - the configuration (read before the switch) stays root's, 0600;
    - the error log and upload directory, used after the switch, are
      lighttpd's user's, 0600/0700.
  """
  if owner is None:
    (uid, gid, dir_mode) = (None, None, 0o700)
  else:
    (uid, gid) = owner
    dir_mode = 0o710
  os.makedirs(layout.state_dir, exist_ok=True)
  for directory in (layout.state_dir, layout.document_root):
    _MakeDir(directory, dir_mode, None if gid is None else os.getuid(), gid)
  _MakeDir(layout.upload_dir, 0o700, uid, gid)
  _TouchFile(layout.error_log, uid, gid)

  temporary = layout.config + ".new"
  with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC |
                    os.O_NOFOLLOW, 0o600), "w") as handle:
    os.fchmod(handle.fileno(), 0o600)
    handle.write(config_text)
  os.replace(temporary, layout.config)


def ResolveOwner(user, group):
  """Return C{(uid, gid)} lighttpd switches to, or None if it does not."""
  if (user is None and group is None) or os.geteuid() != 0:
    return None
  if user is None:
    uid = os.getuid()
    gid = grp.getgrnam(group).gr_gid
  else:
    entry = pwd.getpwnam(user)
    uid = entry.pw_uid
    gid = entry.pw_gid if group is None else grp.getgrnam(group).gr_gid
  return (uid, gid)


def _MakeDir(path, mode, uid, gid):
  """Create directory C{path} if needed and set its mode and owner."""
  try:
    os.mkdir(path, mode)
  except FileExistsError:
    pass
  if os.path.islink(path):
    raise OSError(errno.ELOOP, "Refusing a symlink in the state directory",
                  path)
  os.chmod(path, mode)
  if uid is not None:
    os.chown(path, uid, gid)


def _TouchFile(path, uid, gid):
  """Create file C{path} if needed, mode 0600, owned by C{uid}/C{gid}."""
  descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND |
                       os.O_NOFOLLOW, 0o600)
  try:
    os.fchmod(descriptor, 0o600)
    if uid is not None:
      os.fchown(descriptor, uid, gid)
  finally:
    os.close(descriptor)
