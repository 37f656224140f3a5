"""lighttpd's error log in Ganeti's log directory, written by the daemon.

lighttpd runs without C{server.errorlog}, so it prints its error log (its
start and stop, refused client certificates and other TLS failures, each
with the peer's address) on its standard error: a pipe the daemon reads
(L{Forwarder}; when lighttpd outlives the daemon, released at its stop,
the daemon's drainer reads on).  The daemon appends each line, escaped
and marked (L{output.QuoteLine}), to C{lighttpd-<daemon>.log} in Ganeti's log
directory, next to the daemon's own log (L{LogPath}); the last lines are
also kept for the daemon's error messages when lighttpd fails.

Why the daemon writes the file, not lighttpd: lighttpd runs as the frontend
account (C{www-data}, which other web applications may share).  A file
lighttpd opened would be one that account can write, truncate or fill
with lines of its own; here that account holds no descriptor of the file
and cannot open it (mode 0600, the daemon's user's, as Ganeti's own
daemon logs), and what lighttpd prints cannot reach a terminal as a
control sequence.

Ganeti's log directory may be written by the members of Ganeti's daemons
group (Ganeti 3.0's C{ensure-dirs}: C{/var/log/ganeti}, mode 0770), so the
file is opened through a descriptor of the directory, never through a
symbolic link; a file that is not a regular file of this process's user
with a single link (a link planted to make root append elsewhere) is
removed and made anew with an explicit mode, whatever the umask.

Rotation: Ganeti's logrotate configuration (3.0: C{/etc/logrotate.d/
ganeti}, every C{*.log} of the directory) renames the logs, makes new ones
and runs C{daemon-util rotate-all-logs}, which sends each daemon SIGHUP;
Ganeti's handler reopens the daemon's own log.  L{ErrorLog} checks before
each line that its name still leads to the file it has open and reopens it
otherwise: the first line after a rotation goes to the new file, whenever
the signal comes, and Ganeti's SIGHUP handler stays Ganeti's.
"""

import collections
import errno
import logging
import os
import stat
import threading

from ganeti.http.backends import ganeti_paths
from ganeti.http.backends import selection
from ganeti.http.backends.fastcgi.lighttpd import line_reader
from ganeti.http.backends.fastcgi.lighttpd import output
from ganeti.http.system import trusted_dirs

#: The file's mode when the daemon makes it (Ganeti 3.0's daemon logs').
LOG_MODE = 0o600

#: Lines kept for the daemon's error messages.
RECENT_LINES = 30

_APPEND = os.O_WRONLY | os.O_APPEND


def LogDirectory(environ=os.environ):
  """The directory of lighttpd's error logs (L{selection.ENV_LOG_DIR},
  else Ganeti's log directory, Ganeti 3.0's C{pathutils.LOG_DIR})."""
  return selection.Variable(selection.ENV_LOG_DIR, environ)[0] or \
    ganeti_paths.LogDir(environ)


def LogPath(daemon_name, environ=os.environ):
  """Where the error log of the lighttpd in front of C{daemon_name} goes."""
  return os.path.join(LogDirectory(environ), "lighttpd-%s.log" % daemon_name)


class ErrorLog(object):
  """Appends quoted lines to the file C{path}, reopening it when the name
  leads to another file (rotation); see the module's description."""

  def __init__(self, path):
    self.path = path
    self._lock = threading.Lock()
    self._descriptor = None
    self._failing = False

  def Write(self, line):
    """Append C{line} (bytes, without its newline), quoted.  A failure is
    reported once in the daemon's log, not raised."""
    data = (output.QuoteLine(line) + "\n").encode("utf-8")
    with self._lock:
      try:
        if not self._IsCurrent():
          self._Reopen()
        os.write(self._descriptor, data)
        self._failing = False
      except OSError as err:
        if not self._failing:
          logging.error("Cannot write lighttpd's error log %s: %s",
                        self.path, err)
        self._failing = True

  def Close(self):
    """Close the file (the next L{Write} opens it again)."""
    with self._lock:
      if self._descriptor is not None:
        os.close(self._descriptor)
        self._descriptor = None

  def _IsCurrent(self):
    if self._descriptor is None:
      return False
    try:
      named = os.stat(self.path, follow_symlinks=False)
    except FileNotFoundError:
      return False
    held = os.fstat(self._descriptor)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)

  def _Reopen(self):
    directory = os.open(os.path.dirname(self.path) or ".",
                        os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
      descriptor = _OpenOwnFile(directory, os.path.basename(self.path))
    finally:
      os.close(directory)
    if self._descriptor is not None:
      os.close(self._descriptor)
    self._descriptor = descriptor


def _OpenOwnFile(directory, name):
  """Open C{name} in C{directory} for appending if it is a regular file of
  this process's user with one link, else replace it with a new one."""
  try:
    descriptor = os.open(name, _APPEND | os.O_NOFOLLOW | os.O_NONBLOCK |
                         os.O_CLOEXEC, dir_fd=directory)
  except FileNotFoundError:
    return trusted_dirs.CreateFile(directory, name, LOG_MODE, flags=_APPEND)
  except OSError as err:
    if err.errno not in (errno.ELOOP, errno.ENXIO):  # a symlink, a fifo
      raise
  else:
    info = os.fstat(descriptor)
    if (stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid() and
        info.st_nlink == 1):
      if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        os.fchmod(descriptor, stat.S_IMODE(info.st_mode) &
                  ~(stat.S_IWGRP | stat.S_IWOTH))
      return descriptor
    os.close(descriptor)
  logging.warning("Replacing %s in %s: not a regular file of this daemon's"
                  " user with a single link", name, directory)
  os.unlink(name, dir_fd=directory)
  return trusted_dirs.CreateFile(directory, name, LOG_MODE, flags=_APPEND)


class Forwarder(line_reader.LineReader):
  """Reads, in a thread, what one lighttpd prints (the read end of its
  standard error's pipe, which this object closes): each line goes to an
  L{ErrorLog} (if any), the last L{RECENT_LINES} are kept.  A forked
  process may read on (L{line_reader.LineReader.Pause})."""

  def __init__(self, read_end, error_log):
    self._error_log = error_log
    self._recent = collections.deque(maxlen=RECENT_LINES)
    line_reader.LineReader.__init__(self, read_end, self._Line,
                                    "lighttpd-output")

  def Recent(self, wait=0.0):
    """The last lines, quoted (L{output.Quote}); after waiting up to
    C{wait} seconds for the end of the output (L{Join})."""
    self.Join(wait)
    return output.Quote(b"\n".join(list(self._recent)))

  def _Line(self, line):
    self._recent.append(line)
    if self._error_log is not None:
      self._error_log.Write(line)
