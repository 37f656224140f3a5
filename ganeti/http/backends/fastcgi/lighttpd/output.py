"""What lighttpd printed and logged, read safely and quoted harmlessly.

lighttpd's error log belongs to lighttpd's account, and what lighttpd
prints goes to a file that account's processes write: with a shared
account (C{www-data}), any other web application on the host can put text
there.  The daemon quotes that text in its own log (and in errors) when
lighttpd fails, so L{Quote} makes sure it can neither pass for a line of
the daemon's own nor reach a terminal as a control sequence: every line is
marked with L{QUOTE_MARK}, and every control character (and every byte that
is not UTF-8) is escaped, as Python's C{repr} would (C{\\x1b}, C{\\r},
C{\\u202e}; a backslash becomes C{\\\\}).
"""

import os
import stat
import unicodedata

#: Starts every quoted line.
QUOTE_MARK = "lighttpd| "

#: Lines quoted, the most read of each file for them, and the longest line
#: quoted whole (bytes).  lighttpd's account could make its error log as
#: large as it likes: only its end is read.
_LINES = 30
_READ_LIMIT = 64 * 1024
_LINE_LIMIT = 1024

#: Unicode categories escaped: controls, format characters (bidirectional
#: overrides, zero-width characters) and line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset(["Cc", "Cf", "Zl", "Zp", "Cs"])

_SHORT_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\r": "\\r"}


def ReadFrom(dir_fd, name, offset=0):
  """The bytes of regular file C{name} in directory C{dir_fd} from
  C{offset} on, at most its last L{_READ_LIMIT} (b"" if unreadable); a
  symbolic link is not followed, nor a fifo opened."""
  try:
    descriptor = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK |
                         os.O_CLOEXEC, dir_fd=dir_fd)
  except OSError:
    return b""
  try:
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
      return b""
    os.lseek(descriptor, max(offset, info.st_size - _READ_LIMIT), os.SEEK_SET)
    return os.read(descriptor, _READ_LIMIT)
  finally:
    os.close(descriptor)


def Quote(data):
  """The last lines of C{data} (bytes), each cut to a readable length,
  escaped and marked (see the module's description); "" for no text."""
  lines = data.strip(b"\n").split(b"\n")[-_LINES:]
  if lines == [b""]:
    return ""
  return "\n".join(
    QUOTE_MARK + _Escape(line[:_LINE_LIMIT]) +
    (" [...]" if len(line) > _LINE_LIMIT else "")
    for line in lines)


def _Escape(line):
  """C{line} (bytes) as text without control characters."""
  pieces = []
  for char in line.decode("utf-8", "surrogateescape"):
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
      pieces.append("\\x%02x" % (code - 0xDC00))
    elif char in _SHORT_ESCAPES:
      pieces.append(_SHORT_ESCAPES[char])
    elif unicodedata.category(char) in _ESCAPED_CATEGORIES:
      pieces.append("\\x%02x" % code if code < 0x100 else
                    "\\u%04x" % code if code < 0x10000 else "\\U%08x" % code)
    else:
      pieces.append(char)
  return "".join(pieces)
