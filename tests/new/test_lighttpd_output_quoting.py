"""What lighttpd prints reaches the daemon's logs only quoted (issue 14
§2): marked as lighttpd's, every control character escaped."""

import os

import pytest

from ganeti.http.backends.fastcgi.lighttpd import error_log
from ganeti.http.backends.fastcgi.lighttpd import output


@pytest.mark.parametrize(("data", "quoted"), [
  (b"plain line", "lighttpd| plain line"),
  (b"one\ntwo\n", "lighttpd| one\nlighttpd| two"),
  (b"\x1b[2J\x1b]0;title\x07\r", "lighttpd| \\x1b[2J\\x1b]0;title\\x07\\r"),
  (b"not utf-8 \xff\xfe, a \\ backslash",
   "lighttpd| not utf-8 \\xff\\xfe, a \\\\ backslash"),
  ("bidi \u202e and line\u2028separator, caf\u00e9".encode(),
   "lighttpd| bidi \\u202e and line\\u2028separator, caf\u00e9"),
  (b"", ""),
  (b"y" * 2000, "lighttpd| " + "y" * 1024 + " [...]"),
])
def test_quote(data, quoted):
  assert output.Quote(data) == quoted


def test_forwarder_keeps_the_last_lines_cut_to_length():
  """What lighttpd prints without end (a line of megabytes, no newline) is
  read in pieces; only the last lines are kept, each quoted in part."""
  (read_end, write_end) = os.pipe()
  forwarder = error_log.Forwarder(read_end, None)
  with os.fdopen(write_end, "wb") as pipe:
    pipe.write(b"first\n" + b"x" * (4 << 20) + b"\nlast words\n")
  recent = forwarder.Recent(wait=10).split("\n")
  assert recent[-1] == "lighttpd| last words"
  assert recent[0] == "lighttpd| " + "x" * 1024 + " [...]"
  assert len(recent) == error_log.RECENT_LINES
  assert max(len(line) for line in recent) == len(recent[0])
