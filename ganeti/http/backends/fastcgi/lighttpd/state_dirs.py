"""The private directories of fastcgi-backend servers.

Each server keeps its FastCGI socket, lighttpd's configuration, pid file
and logs in a directory of its own, C{ganeti-http-XXXXXXXX} under the
runtime directory (see L{settings<ganeti.http.backends.fastcgi.settings>}),
and removes it when it stops.  A daemon killed without stopping leaves its
directory behind (its lighttpd is ended by the lifeline), so each directory
names the process that made it in an C{owner} file (pid and start time),
and the next server started with the same runtime directory removes those
whose owner has exited.  A lighttpd released at the daemon's stop still
uses its directory after the daemon exited: the directory's owner is then
the daemon's drainer (L{StateDir.HandOver}), which removes it once that
lighttpd has exited.  L{PrepareForLighttpd} lays out such a directory
for lighttpd, with the owners and modes its privilege switch needs.

Everything here goes through directory descriptors of directories that
only root and the daemon's user can change (L{trusted_dirs}): root runs
lighttpd on the configuration written here.
"""

import binascii
import grp
import logging
import os
import pwd

from ganeti.http.system import process_identity
from ganeti.http.system import trusted_dirs

PREFIX = "ganeti-http-"
_OWNER_FILE = "owner"
_OWNER_TEMPORARY = "owner.new"
_CONFIG_TEMPORARY = "lighttpd.conf.new"


def Create(runtime_dir):
  """Make a new private directory in C{runtime_dir}, mode 0700, owned by
  this process; return its path.

  @raise trusted_dirs.UntrustedPathError: another account could change
      C{runtime_dir}
  """
  runtime_fd = trusted_dirs.OpenTrusted(runtime_dir)
  try:
    while True:
      name = PREFIX + binascii.hexlify(os.urandom(4)).decode()
      try:
        os.mkdir(name, 0o700, dir_fd=runtime_fd)
        break
      except FileExistsError:
        continue
    try:
      directory = trusted_dirs.OpenExisting(runtime_fd, name,
                                            trusted_dirs.DIR_FLAGS, 0o700)
      try:
        _WriteOwner(directory, os.getpid())
      finally:
        os.close(directory)
    except BaseException:
      trusted_dirs.RemoveTree(runtime_fd, name)
      raise
  finally:
    os.close(runtime_fd)
  return os.path.join(runtime_dir, name)


def _WriteOwner(directory, pid):
  """Name process C{pid} in the owner file of C{directory} (a descriptor),
  replacing the file by rename: a reader sees the old or the new one.

  @raise OSError: the directory was removed, or C{pid} has exited
  """
  start_time = process_identity.ParentAndStartTime(pid)[1]
  _ReplaceFile(directory, _OWNER_FILE, _OWNER_TEMPORARY,
               "%d %d\n" % (pid, start_time))


def _ReplaceFile(directory, name, temporary, text):
  """Write C{text} into a new file C{temporary} (mode 0600) of
  C{directory} (a descriptor) and rename it to C{name}: a reader sees the
  old file or the whole new one."""
  try:
    os.unlink(temporary, dir_fd=directory)
  except FileNotFoundError:
    pass
  descriptor = trusted_dirs.CreateFile(directory, temporary, 0o600)
  with os.fdopen(descriptor, "w") as handle:
    handle.write(text)
  os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)


def RemoveAbandoned(runtime_dir):
  """Remove the directories in C{runtime_dir} that belong to this user and
  whose owner process has exited; log and return their paths.

  Directories without an owner file (one being created, or not made by
  L{Create}) are left alone.

  @raise trusted_dirs.UntrustedPathError: another account could change
      C{runtime_dir}
  """
  runtime_fd = trusted_dirs.OpenTrusted(runtime_dir)
  removed = []
  try:
    for name in sorted(os.listdir(runtime_fd)):
      path = os.path.join(runtime_dir, name)
      owner = _Owner(runtime_fd, name) if name.startswith(PREFIX) else None
      if owner is None or process_identity.IsRunning(*owner):
        continue
      try:
        trusted_dirs.RemoveTree(runtime_fd, name)
      except (OSError, RecursionError) as err:
        logging.warning("Could not remove %s, left behind by pid %d: %s",
                        path, owner[0], err)
        continue
      logging.info("Removed %s, left behind by pid %d, which exited without"
                   " stopping its HTTP server", path, owner[0])
      removed.append(path)
  finally:
    os.close(runtime_fd)
  return removed


def _Owner(runtime_fd, name):
  """C{(pid, start time)} from the owner file of C{name}, if it is a
  directory of this user with one; else None."""
  try:
    directory = os.open(name, trusted_dirs.DIR_FLAGS, dir_fd=runtime_fd)
    try:
      if os.fstat(directory).st_uid != os.geteuid():
        return None
      descriptor = os.open(_OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW |
                           os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
    finally:
      os.close(directory)
    with os.fdopen(descriptor) as handle:
      (pid, start_time) = handle.read(100).split()
    return (int(pid), int(start_time))
  except (OSError, ValueError):
    return None


class StateDir(object):
  """A state directory, held open for as long as it is used.

  @ivar path: its path, which lighttpd is given
  @ivar fd: its descriptor, through which this process works in it
  """

  def __init__(self, path):
    """Open (and make, mode 0700, if missing) directory C{path}.

    @raise trusted_dirs.UntrustedPathError: another account could change
        it or a directory above it
    """
    self.path = path
    self.fd = trusted_dirs.OpenTrusted(path, create_mode=0o700)

  def CheckPath(self):
    """Make sure its path still leads to this directory (run before
    anything opens it by path, as lighttpd does).

    @raise trusted_dirs.UntrustedPathError: it does not
    """
    held = os.fstat(self.fd)
    try:
      found = os.stat(self.path)
    except OSError:
      found = None
    if found is None or (found.st_dev, found.st_ino) != (held.st_dev,
                                                         held.st_ino):
      raise trusted_dirs.UntrustedPathError(
        "%s is no longer the state directory this process made: someone"
        " replaced it" % self.path, self.path)

  def fileno(self):
    """Its descriptor (for a forked process to keep)."""
    return self.fd

  def HandOver(self, pid):
    """Make process C{pid} its owner: L{RemoveAbandoned} leaves it alone
    while that process runs (the drainer of a released lighttpd, which
    removes it in the end).  Errors are logged."""
    try:
      _WriteOwner(self.fd, pid)
    except OSError as err:
      logging.warning("Could not hand the state directory %s over to pid"
                      " %d: %s", self.path, pid, err)

  def Close(self):
    """Close its descriptor."""
    os.close(self.fd)

  def Remove(self):
    """Remove it with everything in it, through descriptors (its parent
    opened as L{trusted_dirs.OpenTrusted} does), if its path still leads
    to it; close it.  Errors are logged."""
    name = os.path.basename(self.path)
    try:
      parent = trusted_dirs.OpenTrusted(os.path.dirname(self.path))
      try:
        found = os.stat(name, dir_fd=parent, follow_symlinks=False)
        held = os.fstat(self.fd)
        if (found.st_dev, found.st_ino) == (held.st_dev, held.st_ino):
          trusted_dirs.RemoveTree(parent, name)
      finally:
        os.close(parent)
    except (trusted_dirs.UntrustedPathError, OSError, RecursionError) as err:
      logging.warning("Could not remove the state directory %s: %s",
                      self.path, err)
    finally:
      self.Close()


def PrepareForLighttpd(state_dir, layout, owner, config_text):
  """Lay out lighttpd's state directory (see L{StateLayout<layout.
  StateLayout>}) and write the configuration C{config_text}.

  @param state_dir: the L{StateDir}
  @param owner: C{(uid, gid)} lighttpd switches to (L{ResolveOwner}), or
      None

  Without a user to switch to, everything belongs to this process and is
  private to it.  With one (this process being root):

    - the directory and the empty document root are root's, group
      lighttpd's group, mode 0710: lighttpd may pass through, not list,
      and cannot replace the configuration or the pid file;
    - the configuration (read before the switch) stays root's, 0600;
    - the upload directory, used after the switch, is lighttpd's
      user's, 0700 (lighttpd's error log is its standard error, a pipe:
      L{error_log}).

  Every mode is set explicitly, whatever the umask.  The configuration is
  written to a new file (C{O_EXCL}) and renamed into place within the
  directory, so it never is a file someone else could have opened.
  """
  directory = state_dir.fd
  if owner is None:
    (dir_owner, dir_mode) = (None, 0o700)
  else:
    (dir_owner, dir_mode) = ((os.getuid(), owner[1]), 0o710)
  os.fchmod(directory, dir_mode)
  if dir_owner is not None:
    os.fchown(directory, *dir_owner)
  trusted_dirs.MakeDir(directory, _Name(layout.document_root), dir_mode,
                       dir_owner)
  trusted_dirs.MakeDir(directory, _Name(layout.upload_dir), 0o700, owner)

  _ReplaceFile(directory, _Name(layout.config), _CONFIG_TEMPORARY,
               config_text)


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


def _Name(path):
  """The name of C{path}, one of the state directory's entries."""
  return os.path.basename(path)
