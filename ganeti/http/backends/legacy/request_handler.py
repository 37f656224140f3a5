"""The legacy backend's request handler: one request read with the stdlib's
C{http.server}, answered by the shared pipeline.

It only moves bytes: it parses HTTP with the stdlib, refuses what lighttpd
refuses (so that both backends answer alike), hands an
L{pipeline.IncomingRequest} to the pipeline and writes the
L{pipeline.Response} it gets back.
"""

import http
import http.server
import io
import logging
import re
import socket
import ssl
import struct
import time

from ganeti import http as ganeti_http
from ganeti.http.core import pipeline
from ganeti.http.core import request_body
from ganeti.http.core import request_fields
from ganeti.http.core import request_log
from ganeti.http.core import response_body

#: A control character in a request target, raw or percent-encoded
#: (lighttpd refuses both: server.http-parseopts' url-ctrls-reject).
_CONTROL_CHARACTER_IN_TARGET = re.compile(
  "[\\x00-\\x1f\\x7f]|%[01][0-9A-Fa-f]|%7[Ff]")

#: An HTTP version as RFC 9112 writes them (others are malformed).
_WELL_FORMED_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]\Z")

#: A line break inside a header value (followed by white space).
_OBSOLETE_LINE_FOLDING = re.compile(r"\r?\n(?=[ \t])")

#: A request line's three parts as lighttpd separates them (the stdlib
#: splits at any white space: it refuses C{GET /a\rb HTTP/1.1}, which
#: lighttpd refuses too, as a control character in the target, and logs).
_REQUEST_LINE_PARTS = re.compile(r"[^ ]+ [^ ]+ HTTP/[0-9]\.[0-9]\Z")

#: The status of a request head refused as too large.
_HEAD_TOO_LARGE = http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE


class _HeadDeadlineReader(io.RawIOBase):
  """A socket's receiving side, whose reads must all end by a deadline
  until L{EndDeadline} (the socket timeout only bounds each wait: a client
  sending its request head a byte at a time would hold a worker as long as
  it liked)."""

  def __init__(self, sock, wait_timeout, deadline):
    io.RawIOBase.__init__(self)
    self._sock = sock
    self._wait_timeout = wait_timeout
    self._deadline = deadline

  def readable(self):
    return True

  def readinto(self, buffer):
    if self._deadline is not None:
      left = self._deadline - time.monotonic()
      if left <= 0:
        raise socket.timeout("request head not complete in time")
      self._sock.settimeout(min(self._wait_timeout, left))
    return self._sock.recv_into(buffer)

  def EndDeadline(self):
    """From now on only the socket timeout applies."""
    self._deadline = None
    self._sock.settimeout(self._wait_timeout)


class _LineRecorder(object):
  """Reads lines from a file, keeping them (the stdlib's header parser
  loses how each line ended)."""

  def __init__(self, fileobj):
    self.file = fileobj
    self.lines = []

  def readline(self, limit=-1):
    line = self.file.readline(limit)
    self.lines.append(line)
    return line


class GanetiRequestHandler(http.server.BaseHTTPRequestHandler):
  """Reads one request from a connection and writes the pipeline's answer.

  @cvar timeout: socket timeout in seconds (also bounds each wait of the
      TLS handshake)
  @cvar request_head_timeout: seconds a client has to send its request line
      and headers, however it spreads them out (the connection is then
      closed without an answer, as on a socket timeout); the TLS handshake
      before them has as long again
  @cvar MAX_REQUEST_BODY_SIZE: body size limit in bytes (413 above it)
  """
  timeout = 10
  # A worker waits this long at most for an unauthenticated client (each
  # stage): the same 10 s as lighttpd's server.max-read-idle, but a
  # deadline, as trickled bytes would reset a timeout (issue 14).
  request_head_timeout = 10
  # The stdlib's default, HTTP/0.9, has it answer an unparsable request
  # line with an error page and no status line.
  default_request_version = ganeti_http.HTTP_1_0
  wbufsize = 65536
  MAX_REQUEST_BODY_SIZE = pipeline.MAX_REQUEST_BODY_SIZE
  protocol_version = ganeti_http.HTTP_1_1

  def setup(self):
    http.server.BaseHTTPRequestHandler.setup(self)
    self.rfile.close()  # the stdlib's reader: replaced by one with deadline
    self._head_reader = _HeadDeadlineReader(
      self.connection, self.timeout,
      time.monotonic() + self.request_head_timeout)
    self.rfile = io.BufferedReader(self._head_reader)

  def parse_request(self):
    """The stdlib's parsing, but only HTTP/1.0 and HTTP/1.1 as lighttpd:
    no HTTP/0.9 requests ("GET /path"), and no versions the stdlib reads
    as 1.x ("HTTP/1.01", "HTTP/1.2")."""
    recorder = _LineRecorder(self.rfile)
    self._head_lines = recorder.lines
    self.rfile = recorder
    try:
      parsed = http.server.BaseHTTPRequestHandler.parse_request(self)
    finally:
      self.rfile = recorder.file
    if not parsed:
      return False
    if len(self.raw_requestline.split()) < 3:
      self.send_error(400, "HTTP/0.9 requests are not supported")
      return False
    if self.request_version not in (ganeti_http.HTTP_1_0,
                                    ganeti_http.HTTP_1_1):
      if _WELL_FORMED_VERSION.match(self.request_version):
        self.send_error(505, "HTTP version %s is not supported" %
                        self.request_version)
      else:
        self.send_error(400, "Bad HTTP version %r" % self.request_version)
      return False
    return True

  def version_string(self):
    """The Server header: Ganeti's version, as Ganeti 3.1 sent it."""
    return ganeti_http.HTTP_GANETI_VERSION

  def __getattr__(self, name):
    # The stdlib looks up "do_<METHOD>" and answers 501 itself when it is
    # missing; routing every method to the pipeline keeps that answer (and
    # its error page) the same on both backends.
    if name.startswith("do_"):
      return self._HandleRequest
    raise AttributeError(name)

  def handle_expect_100(self):
    """Send "100 Continue" now, not when the response is flushed: curl
    waits a second for it before sending a body over 1 MiB.  A body over
    the limit, or of a malformed length, is not asked for: the pipeline
    answers 413 or 400 straight away, as lighttpd does."""
    try:
      self._CheckHead()
    except ganeti_http.HttpException:
      return True  # the request is answered 400 without its body
    limit = self.server.pipeline.BodyLimit(self.server.ganeti_handler)
    length = self.headers.get(ganeti_http.HTTP_CONTENT_LENGTH, "").strip()
    if length and not (length.isascii() and length.isdigit()):
      return True
    if limit is not None and length and int(length) > limit:
      return True
    result = http.server.BaseHTTPRequestHandler.handle_expect_100(self)
    self.wfile.flush()
    return result

  def _PeerCertificate(self):
    """The client's certificate in DER form, or None."""
    return self.connection.getpeercert(binary_form=True)

  def _verify_client_certificate(self):  # pylint: disable=invalid-name
    """Check the client certificate with the server's callback.

    Does nothing unless the server verifies peers and the connection is
    TLS.  (Ganeti's own unit tests call this method directly.)

    @raise ganeti.http.HttpForbidden: the certificate is missing or refused
    """
    if not isinstance(self.connection, ssl.SSLSocket):
      return
    policy = pipeline.ClientCertificatePolicy(self.server.ssl_verify_peer,
                                              self.server.ssl_verify_callback)
    policy.Check(self._PeerCertificate())

  def _HandleRequest(self):
    self._head_reader.EndDeadline()
    self.close_connection = True
    tls = isinstance(self.connection, ssl.SSLSocket)
    try:
      self._CheckHead()
      (read_body, chunked) = self._BodyFraming()
    except ganeti_http.HttpException as err:
      self._WriteResponse(pipeline.ErrorResponse(self.server.ganeti_handler,
                                                 err))
      return
    incoming = pipeline.IncomingRequest(
      method=self.command, path=self.path, headers=self.handler_headers,
      read_body=read_body, sock=self.connection, tls=tls,
      peer_certificate=self._PeerCertificate() if tls else None,
      chunked=chunked)
    response = self.server.pipeline.Run(self.server.ganeti_handler, incoming)
    self._WriteResponse(response)

  def _CheckHead(self):
    """Refuse what lighttpd refuses in a request head, so that both
    backends answer it alike (the stdlib lets it through), and give the
    handler the headers lighttpd would pass on
    (L{request_fields.AsLighttpdPassesThem}).

    Values lose the white space around them (RFC 9110; the stdlib keeps
    trailing spaces), and a value folded over several lines (obs-fold) has
    each CR and LF turned into a space, as lighttpd does.

    @raise ganeti.http.HttpBadRequest: a line not ending in CR LF, a
        malformed header field (a line that is not one stops the stdlib's
        parsing: what follows it would be dropped), a repeated field
        lighttpd refuses, an HTTP/1.1 request without a Host, or a control
        character in the request target, even percent-encoded
    """
    if _CONTROL_CHARACTER_IN_TARGET.search(self.path):
      raise ganeti_http.HttpBadRequest("Control character in the request"
                                       " target")
    # lighttpd takes a bare LF for the empty line ending the head only.
    if not all(line.endswith(b"\r\n")
               for line in [self.raw_requestline] + self._head_lines[:-1]):
      raise ganeti_http.HttpBadRequest("Line not ending in CR LF")
    headers = self.headers
    if headers.defects or headers.get_payload() or headers.get_unixfrom():
      raise ganeti_http.HttpBadRequest("Malformed header line")
    fields = [(name, _OBSOLETE_LINE_FOLDING.sub(
                lambda match: " " * len(match.group()), value).rstrip(" \t"))
              for (name, value) in headers.items()]
    for (name, value) in fields:
      if not request_fields.IsValidField(name, value):
        raise ganeti_http.HttpBadRequest("Malformed header field %r" % name)
    self.handler_headers = request_fields.AsLighttpdPassesThem(fields)
    if (self.request_version == ganeti_http.HTTP_1_1 and
        ganeti_http.HTTP_HOST not in self.handler_headers):
      raise ganeti_http.HttpBadRequest("An HTTP/1.1 request needs a Host")

  def _BodyFraming(self):
    """Return C{(read_body, chunked)} for the request's body framing.

    @raise ganeti.http.HttpException: a framing lighttpd would refuse too
    """
    # Two framings at once, or two lengths (the handler would see the
    # first), is how requests are smuggled past proxies.
    lengths = self.headers.get_all(ganeti_http.HTTP_CONTENT_LENGTH, [])
    if len(lengths) > 1:
      raise ganeti_http.HttpBadRequest("More than one Content-Length")
    encodings = self.headers.get_all("Transfer-Encoding")
    if encodings is None:
      return (self.rfile.read, False)
    if lengths:
      raise ganeti_http.HttpBadRequest(
        "Both Transfer-Encoding and Content-Length")
    if self.request_version == ganeti_http.HTTP_1_0:
      # HTTP/1.0 has no transfer codings: its framing is faulty (RFC 9112).
      raise ganeti_http.HttpBadRequest("Transfer-Encoding in HTTP/1.0")
    encoding = ",".join(encodings)
    if encoding.strip().lower() != "chunked":
      raise ganeti_http.HttpNotImplemented(
        "Unsupported Transfer-Encoding %r" % encoding)
    return (request_body.DechunkingReader(self.rfile).read, True)

  def _WriteResponse(self, response):
    body = response.body
    streamed = not isinstance(body, bytes)
    chunked = (streamed and response.content_length is None and
               self.request_version == ganeti_http.HTTP_1_1)
    self.send_response(response.status, response.reason)
    for (name, value) in response.headers:
      self.send_header(name, value)
    if chunked:
      self.send_header("Transfer-Encoding", "chunked")
    self.send_header(ganeti_http.HTTP_CONNECTION, "close")
    self.end_headers()
    if self.command == ganeti_http.HTTP_HEAD:
      if streamed:
        body.close()
    elif streamed:
      self._WriteStream(body, chunked, response.content_length)
    else:
      self.wfile.write(body)

  def _WriteStream(self, stream, chunked, declared_length):
    """Send each chunk as soon as it is produced.

    If the producer fails, or produces more or less than a declared
    Content-Length, or the connection fails (the client went away, or
    stopped reading until the write timed out), the connection is reset so
    the client cannot take the body for complete.
    """
    try:
      self.wfile.flush()
      for chunk in response_body.CheckedLength(stream, declared_length):
        if not chunk:
          continue
        if chunked:
          # Three writes, not one formatted copy of a possibly large chunk.
          self.wfile.write(b"%x\r\n" % len(chunk))
          self.wfile.write(chunk)
          self.wfile.write(b"\r\n")
        else:
          self.wfile.write(chunk)
        self.wfile.flush()
      if chunked:
        self.wfile.write(b"0\r\n\r\n")
    except response_body.StreamAborted as err:
      logging.error("Aborting response to %s %s: %s",
                    request_log.Escaped(self.command),
                    request_log.Escaped(self.path), err)
      self._Abort()
    except OSError as err:  # ssl.SSLError and socket.timeout included
      logging.info("Client %s went away during the response to %s %s: %s",
                   self.address_string(), request_log.Escaped(self.command),
                   request_log.Escaped(self.path), err)
      self._Abort()
    finally:
      stream.close()

  def _Abort(self):
    self._aborted = True
    _ResetConnection(self.connection, (self.wfile, self.rfile))
    # The stdlib still flushes wfile after the request: into nothing.
    self.wfile = io.BytesIO()

  def log_request(self, code="-", size="-"):
    """Log the answer in Ganeti 3.0's format (L{request_log}); the
    stdlib calls this when the status line is sent.  The request line is
    the one lighttpd would log (both backends log the same line): as it
    came if the stdlib refused it but it has a method, a target and a
    version, none if it has not, or if the head was refused as too large
    (lighttpd refuses such a head before reading it)."""
    if int(code) == _HEAD_TOO_LARGE:
      line = None
    elif self.command:
      line = request_log.RequestLine(self.command, self.path,
                                     self.request_version)
    elif _REQUEST_LINE_PARTS.match(getattr(self, "requestline", "")):
      line = self.requestline
    else:
      line = None
    request_log.LogRequest(self.client_address[0], self.client_address[1],
                           line, int(code))

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    """The stdlib's other messages (errors, timeouts), with what the
    client sent escaped (the stdlib's own method does that, but logs to
    stderr)."""
    logging.info("%s - %s", self.address_string(),
                 request_log.Escaped(format % args))

  _aborted = False

  def finish(self):
    """Flush, then close TLS with close_notify before the socket closes
    (nothing to do after L{_ResetConnection})."""
    if self._aborted:
      return
    try:
      self.wfile.flush()
    except OSError:
      pass
    if isinstance(self.connection, ssl.SSLSocket):
      try:
        self.connection.settimeout(0.1)
        self.connection.unwrap()
      except (OSError, ValueError) as err:
        logging.debug("TLS shutdown: %s", err)
    try:
      http.server.BaseHTTPRequestHandler.finish(self)
    except OSError:
      pass

def _ResetConnection(sock, files):
  """Close at once with a TCP reset (no FIN, no TLS close_notify), so the
  client sees an error rather than an end of the body.

  @param files: the file objects made from C{sock}; the socket is only
      really closed once they are
  """
  try:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
  except OSError:
    pass
  for fileobj in files:
    try:
      fileobj.close()
    except (OSError, ValueError):
      pass  # unsent buffered data is what is being thrown away
  sock.close()
