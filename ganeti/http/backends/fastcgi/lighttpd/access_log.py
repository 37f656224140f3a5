"""lighttpd's access log, read by the daemon: the request log on fastcgi.

On the fastcgi backend with a lighttpd the daemon starts, the daemon's
request log (L{request_log}, Ganeti 3.0's C{<address>:<port> <request
line> <status>}) is made from lighttpd's access log, not by the pipeline:
lighttpd logs every request it answers, those it passed to the daemon and
those it refused itself (a malformed head, 411, 413, 431, a backend that
is not there), each once, with the status the client got.  The pipeline
logs its own line only where lighttpd is not ours: on the legacy backend
and when a system lighttpd spawned the daemon
(L{wsgi_application.WsgiApplication}'s C{log_requests}).

How the lines reach the daemon: each lighttpd gets the write end of a
pipe of its own, inherited at its own descriptor number, and opens it as
C{accesslog.filename = env.}L{selection.ENV_ACCESS_LOG} (set to
C{/proc/self/fd/N}).  lighttpd opens its access log after dropping
privileges, so the pipe is given to the frontend account (L{Pipe}).  No
path in the file system leads to it: another process of that account
could only reach it through C{/proc/<lighttpd>/fd}, which the kernel
refuses, lighttpd having changed its user (it is not dumpable).
lighttpd writes each line as L{FORMAT} says; L{Reader} reads them in a
thread and logs each through L{request_log.LogRequest}: the same line,
escaped the same way, as on the legacy backend.  What lighttpd writes is
untrusted text (it runs as the frontend account): a line is logged as a
request only if every field parses (L{ParseLine}), otherwise at WARNING,
escaped and marked as lighttpd's (L{output.QuoteLine}).

Timing: lighttpd (1.4.69) writes a file access log in batches: when
8 KiB are pending, every fourth second (its C{log_access_periodic_flush})
and at exit; a line can come up to four seconds after its answer.  A reader that falls behind (the daemon's log cannot be
written) fills the pipe (L{PIPE_SIZE}) and then holds lighttpd in its
write: requests wait, no line is lost, as with Ganeti 3.0's server, which
logs each request before it answers it.

Stopping: a stopped lighttpd writes what it holds and exits; the reader
logs it before the server's C{Stop} returns.  A lighttpd left to finish
requests in flight after the daemon exits (released) keeps writing: the
reading goes on in the daemon's drainer (L{line_reader}), a fork of the
daemon with its log, which logs the remaining lines until lighttpd has
exited.  A lighttpd killed with SIGKILL loses the lines it held (at most
a second's).
"""

import fcntl
import ipaddress
import logging
import os
import re

from ganeti.http.backends.fastcgi.lighttpd import line_reader
from ganeti.http.backends.fastcgi.lighttpd import output
from ganeti.http.core import request_log

#: lighttpd's C{accesslog.format}: client address, client port, status and
#: the request line (C{%r}: method, target as sent, version), separated by
#: tabs (C{\\t}, which mod_accesslog turns into a tab; lighttpd escapes
#: every tab a client sends).
FORMAT = "%a\\t%{remote}p\\t%s\\t%r"

#: Bytes the pipe holds before lighttpd waits for the reader (Linux's
#: default C{/proc/sys/fs/pipe-max-size}; the kernel's default is 64 KiB).
PIPE_SIZE = 1024 * 1024

#: Lowest descriptor number of the write end lighttpd inherits.
_FIRST_DESCRIPTOR = 10

#: One line of L{FORMAT}.  The request line is empty (C{"  "}) when
#: lighttpd refused the head before reading it (431) or could not parse it.
#: lighttpd escapes every byte of the target outside printable ASCII.
_LINE = re.compile(
  br"(?P<host>[0-9A-Fa-f.:]+)\t(?P<port>[0-9]{1,5})\t(?P<status>[0-9]{1,3})"
  br"\t(?P<method>[!#$%&'*+.^_`|~0-9A-Za-z-]*) (?P<target>[ -~]*)"
  br" (?P<version>HTTP/[0-9]\.[0-9]|)\Z")

#: lighttpd's escapes in C{%r} (C{buffer_append_bs_escaped}): C{\\xHH}, a
#: backslash before C{"} or C{\\}, and C's short escapes.
_ESCAPE = re.compile(br'\\(x[0-9A-Fa-f]{2}|[abtnvfr"\\])')
_SHORT_ESCAPES = {b"a": b"\a", b"b": b"\b", b"t": b"\t", b"n": b"\n",
                  b"v": b"\v", b"f": b"\f", b"r": b"\r", b'"': b'"',
                  b"\\": b"\\"}


def _Unescaped(data):
  """C{data} with lighttpd's escapes undone: the bytes the client sent."""
  def _Byte(match):
    code = match.group(1)
    if code.startswith(b"x"):
      return bytes([int(code[1:], 16)])
    return _SHORT_ESCAPES[code]
  return _ESCAPE.sub(_Byte, data)


def ParseLine(line):
  """C{(host, port, request line or None, status)} of one line lighttpd
  wrote (bytes, without its newline), or None if it is not one of
  L{FORMAT}.  The request line is the client's text (Latin-1, as HTTP's),
  not yet escaped for the log; None when lighttpd has none."""
  match = _LINE.match(line)
  if match is None:
    return None
  host = match.group("host").decode("ascii")
  try:
    ipaddress.ip_address(host)
  except ValueError:
    return None
  port = int(match.group("port"))
  if not 0 < port < 65536:
    return None
  (method, target) = (match.group("method"), match.group("target"))
  request_line = None
  if method and target:
    request_line = request_log.RequestLine(
      method.decode("ascii"), _Unescaped(target).decode("latin-1"),
      match.group("version").decode("ascii"))
  return (host, port, request_line, int(match.group("status")))


def LogLine(line):
  """Log one line of lighttpd's access log: as a request (L{request_log.
  LogRequest}) if it parses, else quoted at WARNING."""
  fields = ParseLine(line)
  if fields is None:
    logging.warning("lighttpd wrote a line that is not one of its access"
                    " log's:\n%s", output.QuoteLine(line))
  else:
    request_log.LogRequest(*fields)


def Pipe(owner):
  """A pipe for one lighttpd's access log: C{(read end, write end)}.

  @param owner: C{(uid, gid)} lighttpd switches to, or None: lighttpd
      opens the write end (C{/proc/self/fd/N}) after switching, which the
      kernel allows only to the pipe's owner
  """
  (read_end, write_end) = os.pipe2(os.O_CLOEXEC)
  try:
    # lighttpd inherits the write end at its number, which must not be one
    # the shell starting it moves descriptors to (3, the listening socket).
    (write_end, low) = (fcntl.fcntl(write_end, fcntl.F_DUPFD_CLOEXEC,
                                    _FIRST_DESCRIPTOR), write_end)
    os.close(low)
    if owner is not None:
      os.fchown(write_end, *owner)
    try:
      fcntl.fcntl(write_end, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
    except OSError as err:  # above the system's pipe-max-size: the default
      logging.debug("Keeping the access log pipe's default size: %s", err)
  except BaseException:
    os.close(read_end)
    os.close(write_end)
    raise
  return (read_end, write_end)


class Reader(line_reader.LineReader):
  """Reads one lighttpd's access log (the read end of its L{Pipe}, which
  this object closes) in a thread, logging each line (L{LogLine}), until
  lighttpd and every copy of the write end are gone; a forked process may
  read on (L{line_reader.LineReader.Pause})."""

  def __init__(self, read_end):
    line_reader.LineReader.__init__(self, read_end, LogLine,
                                    "lighttpd-access-log")
