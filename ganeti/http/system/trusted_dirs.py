"""Directories only root and the daemon's user can change, and files in them.

A root daemon writes lighttpd's configuration, and root runs lighttpd on it:
whoever could change that file, or the directory it is in, could run code
as root.  So the daemon only uses a runtime directory (and state
directories in it) that no other account can change, and works in them
through directory descriptors, never through a path that could be
redirected between a check and a use:

  - L{OpenTrusted} walks a path from C{/}, one component at a time, each
    opened with C{O_NOFOLLOW | O_DIRECTORY} relative to its parent, and
    refuses (L{UntrustedPathError}, naming the path) a directory that
    belongs to another account than root or this process's user, or that
    another account could write to.  A directory on the way (not the last
    one) may be writable by others if it has the sticky bit and belongs to
    root or this user, as C{/tmp}: there others may add entries, but not
    rename or remove ours, which is what taking over a directory needs.
    The last directory must not be writable by any other account at all,
    sticky or not.  A symbolic link on the way is followed only if root
    or this user owns it (as the kernel's C{fs.protected_symlinks} does in
    sticky directories).
  - L{CreateFile} and L{MakeDir} make entries with C{O_EXCL}/C{mkdir} and
    an explicit mode set with C{fchmod} on the new descriptor, whatever
    the umask (Ganeti daemonizes with umask 077).

A group-writable directory counts as writable by others: for a root daemon
the group's members (as C{gnt-daemons} under C{/run/ganeti}) are other
accounts.
"""

import errno
import os
import pwd
import stat

#: How to open a directory: never through a symbolic link.
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: The runtime directory of daemons that run as root; a daemon of another
#: user has C{<this>/<user>} (L{DefaultRuntimeDir}).
ROOT_RUNTIME_DIR = "/run/ganeti-http"

#: The most symbolic links followed in one path, as the kernel's limit.
_MAX_LINKS = 40


class UntrustedPathError(Exception):
  """A directory another account could change, or a missing one.

  @ivar path: the path named in the message
  """

  def __init__(self, message, path):
    Exception.__init__(self, message)
    self.path = path


def _Check(info, path, last, uid):
  """Refuse C{info} (of C{path}) unless only root and C{uid} can change it."""
  if info.st_uid not in (0, uid):
    raise UntrustedPathError(
      "%s belongs to uid %d, neither root nor this daemon's user (uid %d);"
      " another account could replace what the daemon puts there" %
      (path, info.st_uid, uid), path)
  writable_by_others = info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
  if writable_by_others and (last or not info.st_mode & stat.S_ISVTX):
    raise UntrustedPathError(
      "%s is writable by other accounts (mode %04o); it must be writable by"
      " its owner only%s" % (path, stat.S_IMODE(info.st_mode),
                             "" if last else " or have the sticky bit"),
      path)


def OpenTrusted(path, create_mode=None, uid=None):
  """Open directory C{path}, checked as the module says; return its fd.

  @param create_mode: if given, a missing last directory is made with this
      mode (set explicitly, whatever the umask)
  @param uid: the daemon's user (default: this process's effective user);
      root and it are the trusted owners
  @raise UntrustedPathError: a directory on the way could be changed by
      another account, a link on the way belongs to one, or the directory
      is missing (and not to be made)
  @raise OSError: the directory cannot be opened or made
  """
  if not os.path.isabs(path):
    raise UntrustedPathError("%s is not an absolute path" % path, path)
  if uid is None:
    uid = os.geteuid()
  descriptor = os.open("/", DIR_FLAGS)
  try:
    _Check(os.fstat(descriptor), "/", path == "/", uid)
    pending = [part for part in path.split("/") if part]
    walked = ""
    links = 0
    while pending:
      name = pending.pop(0)
      if name == ".":
        continue
      here = walked + "/" + name
      info = _MakeIfMissing(descriptor, name, here,
                            None if pending else create_mode)
      if info is not None and stat.S_ISLNK(info.st_mode):
        links += 1
        if info.st_uid not in (0, uid):
          raise UntrustedPathError(
            "%s is a symbolic link of uid %d, neither root nor this daemon's"
            " user" % (here, info.st_uid), here)
        if links > _MAX_LINKS:
          raise UntrustedPathError("%s: too many symbolic links" % path, path)
        target = os.readlink(name, dir_fd=descriptor)
        pending[:0] = [part for part in target.split("/") if part]
        if target.startswith("/"):
          os.close(descriptor)
          descriptor = os.open("/", DIR_FLAGS)
          walked = ""
        continue
      child = os.open(name, DIR_FLAGS, dir_fd=descriptor)
      os.close(descriptor)
      descriptor = child
      if info is None:
        os.fchmod(descriptor, create_mode)
      walked = here if name != ".." else os.path.dirname(walked)
      _Check(os.fstat(descriptor), walked or "/", not pending, uid)
  except BaseException:
    os.close(descriptor)
    raise
  return descriptor


def DefaultRuntimeDir(user=None):
  """The default runtime directory of a daemon running as C{user} (a user
  name; default: this process's user)."""
  if user is None:
    uid = os.geteuid()
    if uid == 0:
      return ROOT_RUNTIME_DIR
    try:
      user = pwd.getpwuid(uid).pw_name
    except KeyError:
      user = str(uid)
  if user == "root":
    return ROOT_RUNTIME_DIR
  return os.path.join(ROOT_RUNTIME_DIR, user)


def _MakeIfMissing(dir_fd, name, path, create_mode):
  """C{lstat} of C{name} in C{dir_fd}; None if this call made it (only
  with a C{create_mode}).

  @raise UntrustedPathError: it is missing and not to be made
  """
  try:
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
  except FileNotFoundError:
    if create_mode is None:
      raise UntrustedPathError("%s does not exist" % path, path)
  try:
    os.mkdir(name, 0o700, dir_fd=dir_fd)
    return None
  except FileExistsError:  # made meanwhile by another process: check it
    return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)


def CreateFile(dir_fd, name, mode, owner=None, flags=os.O_WRONLY):
  """Create file C{name} in C{dir_fd} (it must not exist); return its fd.

  @param mode: its mode, set explicitly
  @param owner: C{(uid, gid)} to give it, or None
  """
  descriptor = os.open(name, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW |
                       os.O_CLOEXEC, mode, dir_fd=dir_fd)
  try:
    _SetModeAndOwner(descriptor, mode, owner)
  except BaseException:
    os.close(descriptor)
    raise
  return descriptor


def OpenExisting(dir_fd, name, flags, mode, owner=None):
  """Open C{name} in C{dir_fd}, a directory if C{flags} say
  C{O_DIRECTORY}, else a regular file, never through a symbolic link, and
  set its mode and owner; return the descriptor."""
  descriptor = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC,
                       dir_fd=dir_fd)
  try:
    if not (flags & os.O_DIRECTORY or
            stat.S_ISREG(os.fstat(descriptor).st_mode)):
      raise OSError(errno.EINVAL, "Not a regular file", name)
    _SetModeAndOwner(descriptor, mode, owner)
  except BaseException:
    os.close(descriptor)
    raise
  return descriptor


def MakeDir(dir_fd, name, mode, owner=None):
  """Make directory C{name} in C{dir_fd} if missing (an existing one must
  be a directory, not a link to one); set its mode and owner."""
  try:
    os.mkdir(name, 0o700, dir_fd=dir_fd)
  except FileExistsError:
    pass
  os.close(OpenExisting(dir_fd, name, DIR_FLAGS, mode, owner))


def RemoveTree(dir_fd, name):
  """Remove C{name} from C{dir_fd} with everything in it; links are
  removed, never followed."""
  try:
    descriptor = os.open(name, DIR_FLAGS, dir_fd=dir_fd)
  except OSError as err:
    if err.errno not in (errno.ENOTDIR, errno.ELOOP):
      raise
    os.unlink(name, dir_fd=dir_fd)
    return
  try:
    for entry in os.listdir(descriptor):
      RemoveTree(descriptor, entry)
  finally:
    os.close(descriptor)
  os.rmdir(name, dir_fd=dir_fd)


def _SetModeAndOwner(descriptor, mode, owner):
  os.fchmod(descriptor, mode)
  if owner is not None:
    os.fchown(descriptor, *owner)
