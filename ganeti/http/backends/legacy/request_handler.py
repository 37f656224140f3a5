"""The legacy backend: Python's C{http.server} with stdlib C{ssl}, in threads.

This is the server Ganeti 3.2 ships, kept as the backend a daemon falls back
to.  It only moves bytes: it parses HTTP with the stdlib, hands an
L{pipeline.IncomingRequest} to the shared pipeline and writes the
L{pipeline.Response} it gets back.  Every connection carries one request
(C{Connection: close}), as in Ganeti.
"""

import concurrent.futures
import http.server
import io
import logging
import re
import select
import socket
import ssl
import struct
import threading
import time

from ganeti import http as ganeti_http
from ganeti.http.system import child_reaper
from ganeti.http.core import pipeline
from ganeti.http.core import request_body
from ganeti.http.core import response_body

#: How often the accepting thread, waiting for a free worker, checks whether
#: the server is stopping (seconds).
_WAIT_FOR_WORKER = 0.1

#: A control character in a request target, raw or percent-encoded
#: (lighttpd refuses both: server.http-parseopts' url-ctrls-reject).
_CONTROL_CHARACTER_IN_TARGET = re.compile(
  "[\\x00-\\x1f\\x7f]|%[01][0-9A-Fa-f]|%7[Ff]")

#: An HTTP version as RFC 9112 writes them (others are malformed).
_WELL_FORMED_VERSION = re.compile(r"HTTP/[0-9]\.[0-9]\Z")

#: A line break inside a header value (followed by white space).
_OBSOLETE_LINE_FOLDING = re.compile(r"\r?\n(?=[ \t])")

#: Longest time spent reading and dropping a request body the server did
#: not read, after answering, before closing (seconds).
_LINGER_TIMEOUT = 2.0


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


def _HandshakeWithin(tls_socket, wait_timeout, total_timeout):
  """Do the server side of a TLS handshake, waiting at most C{wait_timeout}
  seconds for each of the client's messages and C{total_timeout} in all (a
  blocking handshake only bounds each read: a client trickling its hello a
  byte at a time would hold a worker as long as it liked).

  @raise socket.timeout: the client took too long
  @raise ssl.SSLError: the handshake failed
  """
  deadline = time.monotonic() + total_timeout
  tls_socket.setblocking(False)
  waiting = select.poll()
  while True:
    try:
      tls_socket.do_handshake()
      break
    except ssl.SSLWantReadError:
      events = select.POLLIN
    except ssl.SSLWantWriteError:
      events = select.POLLOUT
    left = deadline - time.monotonic()
    waiting.register(tls_socket, events)
    if left <= 0 or not waiting.poll(1000 * min(left, wait_timeout)):
      raise socket.timeout("TLS handshake not complete in time")
  tls_socket.settimeout(wait_timeout)


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
  request_head_timeout = 30
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
    if not http.server.BaseHTTPRequestHandler.parse_request(self):
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
      method=self.command, path=self.path, headers=self.headers,
      read_body=read_body, sock=self.connection, tls=tls,
      peer_certificate=self._PeerCertificate() if tls else None,
      chunked=chunked)
    response = self.server.pipeline.Run(self.server.ganeti_handler, incoming)
    self._WriteResponse(response)

  def _CheckHead(self):
    """Refuse what lighttpd refuses in a request head, so that both
    backends answer it alike (the stdlib lets it through).

    Values lose the white space around them (RFC 9110; the stdlib keeps
    trailing spaces), and a value folded over several lines (obs-fold) has
    each CR and LF turned into a space, as lighttpd does.

    @raise ganeti.http.HttpBadRequest: a malformed header field (a line
        that is not one stops the stdlib's parsing: what follows it would
        be dropped), more than one Host, an HTTP/1.1 request without one,
        or a control character in the request target, even percent-encoded
    """
    if _CONTROL_CHARACTER_IN_TARGET.search(self.path):
      raise ganeti_http.HttpBadRequest("Control character in the request"
                                       " target")
    headers = self.headers
    if headers.defects or headers.get_payload() or headers.get_unixfrom():
      raise ganeti_http.HttpBadRequest("Malformed header line")
    if any("\n" in value or value != value.strip(" \t")
           for value in headers.values()):
      self.headers = headers = pipeline.HeadersFromPairs(
        [(name, _OBSOLETE_LINE_FOLDING.sub(
          lambda match: " " * len(match.group()), value).strip(" \t"))
         for (name, value) in headers.items()])
    for (name, value) in headers.items():
      if not pipeline.IsValidField(name, value):
        raise ganeti_http.HttpBadRequest("Malformed header field %r" % name)
    hosts = len(headers.get_all(ganeti_http.HTTP_HOST, []))
    if hosts > 1 or (not hosts and
                     self.request_version == ganeti_http.HTTP_1_1):
      raise ganeti_http.HttpBadRequest("A request needs one Host at most,"
                                       " and HTTP/1.1 one exactly")

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
      logging.error("Aborting response to %s %s: %s", self.command,
                    self.path, err)
      self._Abort()
    except OSError as err:  # ssl.SSLError and socket.timeout included
      logging.info("Client %s went away during the response to %s %s: %s",
                   self.address_string(), self.command, self.path, err)
      self._Abort()
    finally:
      stream.close()

  def _Abort(self):
    self._aborted = True
    _ResetConnection(self.connection, (self.wfile, self.rfile))
    # The stdlib still flushes wfile after the request: into nothing.
    self.wfile = io.BytesIO()

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    logging.info("%s - %s", self.address_string(), format % args)

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


def _DrainUnread(sock, timeout):
  """If data from the client is waiting, read and drop what comes for up
  to C{timeout} seconds (until the client closes its side)."""
  try:
    if not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
      return  # the client closed its side
  except (OSError, ValueError):
    return  # nothing waiting (or a TLS socket still wrapped)
  deadline = time.monotonic() + timeout
  try:
    while True:
      left = deadline - time.monotonic()
      if left <= 0:
        return
      sock.settimeout(left)
      if not sock.recv(65536):
        return
  except OSError:
    return


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


class LegacyHttpServer(http.server.HTTPServer):
  """Threaded C{HTTPServer} serving a Ganeti handler.

  Binds and listens in the constructor (port 0 picks a free port, see
  C{server_address}); L{Start} serves in a background thread, at most
  C{max_clients} requests at once; L{Stop} lets those finish.

  @ivar backend: C{"legacy"}
  """
  backend = "legacy"
  allow_reuse_address = True
  request_queue_size = 128

  def __init__(self, options):
    self.ganeti_handler = options.handler
    # Ganeti 3.2's server reaps forgotten children; 3.0's main loop does.
    self._reaps_children = options.mainloop is None
    self._release_reaper = None
    self.ssl_verify_peer = options.ssl_verify_peer
    self.ssl_verify_callback = options.ssl_verify_callback
    self.address_family = options.address_family
    self.pipeline = pipeline.RequestPipeline(
      pipeline.ClientCertificatePolicy(options.ssl_verify_peer,
                                       options.ssl_verify_callback),
      max_body_size=GanetiRequestHandler.MAX_REQUEST_BODY_SIZE)
    http.server.HTTPServer.__init__(
      self, (options.local_address, options.port), GanetiRequestHandler)
    if options.ssl_params is None:
      self._ssl_context = None
    else:
      self._ssl_context = self._create_ssl_context(options.ssl_params,
                                                   options.ssl_verify_peer)
    self._workers = concurrent.futures.ThreadPoolExecutor(
      max_workers=options.max_clients, thread_name_prefix="HTTPWorker")
    # A connection is accepted only when a worker is free for it.
    self._free_workers = threading.BoundedSemaphore(options.max_clients)
    self._stopping = threading.Event()
    self._serve_thread = None

  @staticmethod
  def _create_ssl_context(ssl_params, ssl_verify_peer):
    """Return the server's C{ssl.SSLContext}: TLS 1.2 or newer.

    With C{ssl_verify_peer}, clients must present a certificate that
    chains to the server's own certificate (Ganeti's cluster certificate
    is both the server certificate and the CA).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(
      certfile=ssl_params.ssl_chain_path or ssl_params.ssl_cert_path,
      keyfile=ssl_params.ssl_key_path)
    if ssl_verify_peer:
      context.verify_mode = ssl.CERT_REQUIRED
      context.load_verify_locations(cafile=ssl_params.ssl_cert_path)
    return context

  def Start(self):
    """Serve in a background thread; returns at once.  A server made with
    Ganeti 3.2's signature also reaps the daemon's forgotten children
    (L{child_reaper}), as 3.2's does."""
    logging.info("Serving HTTP%s on %s port %s with the %s backend",
                 "S" if self._ssl_context else "", self.server_address[0],
                 self.server_address[1], self.backend)
    self._serve_thread = threading.Thread(target=self.serve_forever,
                                          kwargs={"poll_interval": 0.05},
                                          name="HTTPServer", daemon=True)
    self._serve_thread.start()
    if self._reaps_children and self._release_reaper is None:
      self._release_reaper = child_reaper.Hold()

  def Stop(self):
    """Stop accepting, let requests in progress finish, close the socket."""
    self._stopping.set()
    if self._serve_thread is not None:
      self.shutdown()
      self._serve_thread.join()
      self._serve_thread = None
    self._workers.shutdown(wait=True)
    self.server_close()
    if self._release_reaper is not None:
      self._release_reaper()
      self._release_reaper = None

  def get_request(self):
    """Accept a connection once a worker is free to serve it.

    Until then connections wait in the kernel's listen queue (bounded by
    C{request_queue_size}), not accepted, each holding a file descriptor,
    in an unbounded queue of this process.
    """
    while not self._free_workers.acquire(timeout=_WAIT_FOR_WORKER):
      if self._stopping.is_set():
        raise OSError("server stopping")  # socketserver accepts nothing
    try:
      return self.socket.accept()
    except BaseException:
      self._free_workers.release()
      raise

  def process_request(self, request, client_address):
    self._workers.submit(self._ServeConnection, request, client_address)

  def _ServeConnection(self, request, client_address):
    # Each response (and each streamed chunk) is flushed whole, so Nagle's
    # algorithm only delays: TLS's close_notify after a response waited
    # for the client's delayed ACK, 40 ms per request.
    request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
      if self._ssl_context is not None:
        request = self._ssl_context.wrap_socket(
          request, server_side=True, do_handshake_on_connect=False)
        try:
          _HandshakeWithin(request, GanetiRequestHandler.timeout,
                           GanetiRequestHandler.request_head_timeout)
        except (OSError, ssl.SSLError) as err:
          logging.info("TLS handshake with %s failed: %s", client_address[0],
                       err)
          return
      self.finish_request(request, client_address)
    except ConnectionError as err:
      # Handler errors were answered already: this is the client leaving.
      logging.info("Client %s went away: %s", client_address[0], err)
    except Exception:  # pylint: disable=broad-except
      self.handle_error(request, client_address)
    finally:
      self.shutdown_request(request)
      self._free_workers.release()

  def shutdown_request(self, request):
    """Half-close, drop what the client may still be sending, then close.

    A request body the server did not read (an early 413, say) would make
    the kernel reset the connection at close, and a client that reads the
    answer only after sending its whole body would lose it.
    """
    try:
      request.shutdown(socket.SHUT_WR)
    except OSError:
      pass
    _DrainUnread(request, _LINGER_TIMEOUT)
    self.close_request(request)

  def handle_error(self, request, client_address):
    logging.exception("Error while serving %s", client_address[0])
