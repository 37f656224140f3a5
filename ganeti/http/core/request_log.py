"""The request log: one INFO line per answered request, on both backends.

Ganeti 3.0's server logs each answer in the daemon's own log as
C{<client address>:<port> <request line> <status>}, e.g.
C{192.0.2.11:39604 POST /version HTTP/1.1 200}; operators grep these
lines (RAPI's audit trail is in them).  Both backends log the same line
through L{LogRequest}: the legacy backend for each request it answers; on
the fastcgi backend lighttpd's access log, read by the daemon, for each
request lighttpd answers, those it refuses itself included
(L{access_log<ganeti.http.backends.fastcgi.lighttpd.access_log>}).

A request refused before its request line was read (one that could not
be parsed; a head over the size limit, which lighttpd refuses unread) is
logged with L{NO_REQUEST_LINE} in its place, as Ganeti 3.0 logs the
requests it refuses.

Everything in the line but the status and the port comes from the client,
so every control character in it is escaped (L{Escaped}): a client must
not be able to write a terminal escape sequence, or a line break followed
by a line of its own making, into the daemon's log.  Messages of this
package that quote what a client sent use L{Escaped} too.
"""

import logging

#: The request line of a request whose request line was not read.
NO_REQUEST_LINE = "None"

#: C0 and C1 control characters and DEL -> a visible escape ("\\x1b").
#: Text from HTTP is Latin-1, so this covers every byte a client can send
#: that a terminal could act on.
_CONTROL_ESCAPES = dict(
  [(code, "\\x%02x" % code) for code in range(0x20)] +
  [(code, "\\x%02x" % code) for code in range(0x7f, 0xa0)] +
  [(ord("\\"), "\\\\")])


def Escaped(text):
  """C{text} with each control character written as C{\\xHH} (and each
  backslash doubled, so that an escape cannot be forged)."""
  return str(text).translate(_CONTROL_ESCAPES)


def RequestLine(method, target, version):
  """The request line as Ganeti 3.0 logs it: C{METHOD TARGET VERSION}."""
  return "%s %s %s" % (method, target, version)


def LogRequest(host, port, request_line, status):
  """Log one answered request at INFO, in Ganeti 3.0's format.

  @param host: the client's address (IPv4 or IPv6, as the socket gives it)
  @param port: the client's port
  @param request_line: see L{RequestLine}; None when it was not read
  @param status: the status code the request was answered with
  """
  logging.info("%s:%s %s %s", Escaped(host), Escaped(port),
               NO_REQUEST_LINE if request_line is None else
               Escaped(request_line), status)
