"""What lighttpd printed, quoted harmlessly.

lighttpd runs as the frontend account, and what it prints can carry text
of others: a client's certificate subject in a refused TLS handshake, and,
with a shared account (C{www-data}), whatever another process of that
account makes it say.  The daemon quotes that text in lighttpd's error log
(L{error_log}) and in its own log and errors when lighttpd fails, so
L{Quote} makes sure it can neither pass for a line of
the daemon's own nor reach a terminal as a control sequence: every line is
marked with L{QUOTE_MARK}, and every control character (and every byte that
is not UTF-8) is escaped, as Python's C{repr} would (C{\\x1b}, C{\\r},
C{\\u202e}; a backslash becomes C{\\\\}).
"""

import unicodedata

#: Starts every quoted line.
QUOTE_MARK = "lighttpd| "

#: Lines quoted, and the longest line quoted whole (bytes).
_LINES = 30
_LINE_LIMIT = 1024

#: Unicode categories escaped: controls, format characters (bidirectional
#: overrides, zero-width characters) and line and paragraph separators.
_ESCAPED_CATEGORIES = frozenset(["Cc", "Cf", "Zl", "Zp", "Cs"])

_SHORT_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\r": "\\r"}


def Quote(data):
  """The last lines of C{data} (bytes), each cut to a readable length,
  escaped and marked (see the module's description); "" for no text."""
  lines = data.strip(b"\n").split(b"\n")[-_LINES:]
  if lines == [b""]:
    return ""
  return "\n".join(QuoteLine(line) for line in lines)


def QuoteLine(line):
  """C{line} (bytes, one line) cut to a readable length, escaped and
  marked."""
  return (QUOTE_MARK + _Escape(line[:_LINE_LIMIT]) +
          (" [...]" if len(line) > _LINE_LIMIT else ""))


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
