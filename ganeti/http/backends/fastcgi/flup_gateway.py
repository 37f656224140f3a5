"""flup's FastCGI-to-WSGI gateway, with what flup 1.0.3 lacks for a daemon.

flup decodes FastCGI records and calls a WSGI application; the overrides
here give:

- fewer system calls and copies: records received many at a time and
  sent one per call (flup: a C{select()} and two or three C{recv()} per
  record received, three C{send()} per record sent), records of up to
  64 KiB (flup: 8 KiB), request bodies kept as received until read;
- a response that fails mid-stream aborts the connection, so the client
  cannot take a cut body for complete;
- a plain 500 instead of flup's HTML page, never a traceback to a client.

lighttpd opens one connection per request and never multiplexes, so flup's
multiplexing stays off.  The accept loop is L{listener}'s, the forked
processes are L{workers}'.
"""

import collections
import fcntl
import logging
import socket
import struct
import termios
import time

from flup.server import fcgi_base

from ganeti.http.backends.fastcgi import records as fastcgi_records
from ganeti.http.core import response_body

#: WSGI environment key under which the gateway offers the application a
#: list: it calls each callable appended there once lighttpd has closed the
#: request's connection, having read and acted on everything sent (such as
#: opening an X-Sendfile file).
AFTER_CONNECTION_KEY = "ganeti.http.after_connection"

#: Send buffer of a FastCGI connection that streams a response.
_STREAMING_SEND_BUFFER = 128 * 1024

#: Bytes asked for per recv() on a FastCGI connection.
_RECEIVE_SIZE = 64 * 1024

#: Largest FCGI_PARAMS stream accepted (the CGI variables of one request:
#: lighttpd sends a few KiB, the request headers and a client certificate).
MAX_PARAMS_SIZE = 1 << 20

#: Longest wait for lighttpd to read a failed response's data (seconds).
_ABORT_DRAIN_TIMEOUT = 5.0

#: Time lighttpd gets to act on that data before the connection drops.
_ABORT_GRACE = 0.05


class _InputStream(object):
  """FCGI_STDIN (or FCGI_DATA) as C{wsgi.input}, which only
  the WSGI application reads, through C{read()}.

  The received records stay as they are until read (flup's stream joined
  and re-sliced everything it held on every read: several copies of an
  uploaded body).
  """

  def __init__(self, conn):
    self._conn = conn
    self._chunks = collections.deque()
    self._available = 0
    self._ended = False

  def add_data(self, data):  # pylint: disable=invalid-name
    """Called by the connection with each record's data; empty at the end."""
    if data:
      self._chunks.append(data)
      self._available += len(data)
    else:
      self._ended = True

  def read(self, size=-1):
    """Return C{size} bytes (all if negative), fewer only at the end of the
    stream, waiting for records as needed.

    @raise EOFError: lighttpd closed the connection before the end
    """
    while not self._ended and (size < 0 or self._available < size):
      self._conn.process_input()
    if size < 0 or size >= self._available:
      size = self._available
    parts = []
    missing = size
    while missing:
      chunk = self._chunks.popleft()
      if len(chunk) > missing:
        self._chunks.appendleft(chunk[missing:])
        chunk = chunk[:missing]
      parts.append(chunk)
      missing -= len(chunk)
    self._available -= size
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _Connection(fcgi_base.Connection):
  """flup's FastCGI connection, reading and writing with fewer system calls.

  flup waits in C{select()} and makes two or three C{recv()} calls for
  each record; here one C{recv()} takes in whatever lighttpd sent (for a
  small request: all of it) and L{fastcgi_records.RecordDecoder} splits it.
  Each record goes out with one call.  The CGI variables are decoded in one
  pass once all have arrived (flup decoded pair by pair, record by record,
  and could not decode a pair split between two records).
  """

  _inputStreamClass = _InputStream

  def __init__(self, sock, addr, server, timeout):
    fcgi_base.Connection.__init__(self, sock, addr, server, timeout)
    self._decoder = fastcgi_records.RecordDecoder()
    self._streaming = False

  @property
  def socket(self):
    """The connection's socket."""
    return self._sock

  def StartStreaming(self):
    """Called before a response goes out in more than one piece: shrink
    the socket's send buffer (once), so that lighttpd never finds much
    more to read than it can pass on, which it would spool to temporary
    files.  Measured on 1 GiB streams (docs/performance.md): with
    lighttpd's 8 KiB read buffers 32 KiB did best; with the 64 KiB ones
    our configuration sets, 128 KiB (1.2-1.9 GB/s, against 1.3-1.6 with
    64 KiB and 1.3-1.6 with the system's default of 208 KiB).  A response
    sent in one piece does without the system call."""
    if not self._streaming:
      self._streaming = True
      self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                            _STREAMING_SEND_BUFFER)

  def process_input(self):
    """Handle the next record, receiving more bytes only when needed.

    @raise EOFError: lighttpd closed the connection
    @raise fastcgi_records.ProtocolError: the peer does not speak FastCGI
    """
    record = self._decoder.NextRecord()
    while record is None:
      data = self._sock.recv(max(_RECEIVE_SIZE, self._decoder.MissingBytes()))
      if not data:
        raise EOFError()
      self._decoder.Feed(data)
      record = self._decoder.NextRecord()
    method = self._RECORD_METHODS.get(record.type)
    if method is not None:
      getattr(self, method)(record)
    elif record.requestId == fcgi_base.FCGI_NULL_REQUEST_ID:
      self._do_unknown_type(record)

  _RECORD_METHODS = {
    fcgi_base.FCGI_GET_VALUES: "_do_get_values",
    fcgi_base.FCGI_BEGIN_REQUEST: "_do_begin_request",
    fcgi_base.FCGI_ABORT_REQUEST: "_do_abort_request",
    fcgi_base.FCGI_PARAMS: "_do_params",
    fcgi_base.FCGI_STDIN: "_do_stdin",
    fcgi_base.FCGI_DATA: "_do_data",
  }

  def _do_params(self, inrec):  # pylint: disable=invalid-name
    req = self._requests.get(inrec.requestId)
    if req is None:
      return
    if inrec.contentData:
      req.encoded_params.append(inrec.contentData)
      req.encoded_params_size += len(inrec.contentData)
      if req.encoded_params_size > MAX_PARAMS_SIZE:
        raise fastcgi_records.ProtocolError(
          "FCGI_PARAMS stream over %d bytes" % MAX_PARAMS_SIZE)
    else:
      req.params = fastcgi_records.DecodeParams(b"".join(req.encoded_params))
      self._start_request(req)

  def _do_get_values(self, inrec):  # pylint: disable=invalid-name
    """Answer the values asked for that we know (flup compared the names,
    bytes, with its str keys, so it never answered any)."""
    capability = self.server.capability
    answer = b"".join(
      fastcgi_records.EncodePair(name, str(capability[name]))
      for name in fastcgi_records.DecodeParams(inrec.contentData)
      if name in capability)
    _SendBuffers(self._sock, fastcgi_records.RecordBuffers(
      fcgi_base.FCGI_GET_VALUES_RESULT, fcgi_base.FCGI_NULL_REQUEST_ID,
      answer))

  def _cleanupSocket(self):  # pylint: disable=invalid-name
    """Half-close, wait for lighttpd to close its side, then close (closing
    with unread data would reset the connection)."""
    if self._sock.fileno() == -1:
      return  # already done (flup's run() calls this once more)
    try:
      self._sock.shutdown(socket.SHUT_WR)
      while self._sock.recv(4096):
        pass
    except OSError:
      pass
    self._sock.close()

  def writeRecord(self, rec):  # pylint: disable=invalid-name
    _SendBuffers(self._sock, fastcgi_records.RecordBuffers(
      rec.type, rec.requestId, rec.contentData))

  @staticmethod
  def EndRequestBuffers(req, app_status=0,
                        protocol_status=fcgi_base.FCGI_REQUEST_COMPLETE):
    """The FCGI_END_REQUEST record of C{req}, to send; marks it as sent."""
    req.end_sent = True
    return fastcgi_records.RecordBuffers(
      fcgi_base.FCGI_END_REQUEST, req.requestId,
      struct.pack(fcgi_base.FCGI_EndRequestBody, app_status,
                  protocol_status))

  def end_request(self, req, appStatus=0,  # pylint: disable=invalid-name
                  protocolStatus=fcgi_base.FCGI_REQUEST_COMPLETE,
                  remove=True):
    """End C{req} (unless its end went out with its last data), then close
    the connection, as lighttpd never asks to keep it."""
    if not req.end_sent:
      _SendBuffers(self._sock,
                   self.EndRequestBuffers(req, appStatus, protocolStatus))
    if remove:
      del self._requests[req.requestId]
    if not req.flags & fcgi_base.FCGI_KEEP_CONN and not self._requests:
      self._cleanupSocket()
      self._keepGoing = False

  def Abort(self):
    """Drop the connection without ending the request, so that lighttpd
    closes the client's connection without completing the response.

    lighttpd only does so once it has started sending the response: if it
    reads the data and the end of the connection in one go, it sends what
    it got as a complete body with a Content-Length.  So first wait until
    lighttpd has read everything sent (the socket's output queue is
    empty), then a moment more for it to pass that on.
    """
    self._keepGoing = False
    deadline = time.monotonic() + _ABORT_DRAIN_TIMEOUT
    while _UnreadBytes(self._sock) and time.monotonic() < deadline:
      time.sleep(0.005)
    time.sleep(_ABORT_GRACE)
    try:
      self._sock.shutdown(socket.SHUT_RDWR)
    except OSError:
      pass


def _UnreadBytes(sock):
  """Bytes written to C{sock} that the peer has not read yet (Linux)."""
  try:
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
  except OSError:
    return 0
  return struct.unpack("i", raw)[0]


class _OutputStream(fcgi_base.OutputStream):
  """flup's FCGI_STDOUT stream, buffered until each flush, with two changes:

  - a large write goes out as many records in one system call, without
    copying the data (flup sliced the remaining bytes for every record:
    about eight copies of a 1 MiB chunk);
  - the flush that completes a body of known length (Content-Length) also
    ends the stream and the request, in the same call: lighttpd closes the
    connection as soon as it has the whole body, so what flup would send
    next (the end of the stream, FCGI_END_REQUEST) would hit a closed
    socket.
  """

  def __init__(self, conn, req):
    fcgi_base.OutputStream.__init__(self, conn, req, fcgi_base.FCGI_STDOUT,
                                    buffered=True)
    # Body bytes the Content-Length still announces; None: no length.
    self._body_left = None

  def write(self, data):
    if self.closed:
      raise response_body.StreamAborted("Data after the end of the body")
    if not self.dataWritten:
      # flup's gateway writes the whole CGI header block first.
      self._body_left = _DeclaredLength(data)
    elif self._body_left is not None:
      self._body_left -= len(data)
    fcgi_base.OutputStream.write(self, data)

  def flush(self):
    data = b"".join(self._bufList)
    self._bufList = []
    view = memoryview(data)
    size = self._req.server.maxwrite - fcgi_base.FCGI_HEADER_LEN
    buffers = []
    for start in range(0, len(view), size):
      buffers.extend(fastcgi_records.RecordBuffers(
        self._type, self._req.requestId, view[start:start + size]))
    if self._body_left == 0:
      buffers.extend(fastcgi_records.RecordBuffers(
        self._type, self._req.requestId, b""))
      buffers.extend(self._conn.EndRequestBuffers(self._req))
      self.closed = True
    else:
      self._conn.StartStreaming()
    _SendBuffers(self._conn.socket, buffers)


def _DeclaredLength(cgi_headers):
  """The Content-Length in a CGI header block, or None."""
  for line in cgi_headers.split(b"\r\n"):
    (name, _, value) = line.partition(b":")
    if name.strip().lower() == b"content-length":
      try:
        return int(value)
      except ValueError:
        return None
  return None


def _SendBuffers(sock, buffers):
  """Send all C{buffers}, in order, with as few system calls as possible."""
  buffers = [buffer for buffer in buffers if len(buffer)]
  while buffers:
    sent = sock.sendmsg(buffers[:1024])  # at most IOV_MAX buffers a call
    while sent:
      if sent >= len(buffers[0]):
        sent -= len(buffers.pop(0))
      else:
        buffers[0] = memoryview(buffers[0])[sent:]
        sent = 0


class _Request(fcgi_base.Request):
  """flup's request, minus its SIGALRM timeout, plus two endings flup lacks:

  - a body that fails mid-stream (L{response_body.StreamAborted}, or any
    error once the response has started) aborts the connection, so the
    client cannot take the cut body for complete;
  - lighttpd closing the connection (its client went away) is logged as
    such, not as a traceback.

  flup's gateway has already closed the WSGI body in both cases.  What the
  application left under L{AFTER_CONNECTION_KEY} runs last,
  once lighttpd has closed the connection (or it was dropped).
  """

  def __init__(self, conn, input_stream_class, timeout):
    fcgi_base.Request.__init__(self, conn, input_stream_class, timeout)
    # FCGI_PARAMS contents, decoded once the stream ends (see _Connection).
    self.encoded_params = []
    self.encoded_params_size = 0
    # flup writes the CGI headers and each body chunk separately, then
    # flushes: buffered, each flush sends them as one record.
    self.stdout = _OutputStream(conn, self)
    # Whether FCGI_END_REQUEST went out already (see _OutputStream).
    self.end_sent = False

  def run(self):
    after_connection = []
    self.params[AFTER_CONNECTION_KEY] = after_connection
    try:
      self._Run()
    finally:
      for function in after_connection:
        try:
          function()
        except Exception:  # pylint: disable=broad-except
          logging.exception("Error after the end of a FastCGI connection")

  def _Run(self):
    try:
      (protocol_status, app_status) = self.server.handler(self)
    except response_body.StreamAborted:
      self._conn.Abort()
      return
    except ConnectionError as err:
      logging.info("lighttpd closed the FastCGI connection: %s", err)
      return
    except Exception:  # pylint: disable=broad-except
      logging.exception("Error in the FastCGI gateway")
      if self.stdout.dataWritten:
        self._conn.Abort()  # as for StreamAborted: never a clean-looking end
        return
      self.server.error(self)
      (protocol_status, app_status) = (fcgi_base.FCGI_REQUEST_COMPLETE, 0)
    try:
      self._flush()
      self._end(app_status, protocol_status)
    except ConnectionError as err:
      logging.info("lighttpd closed the FastCGI connection: %s", err)


class FlupGateway(fcgi_base.BaseFCGIServer):
  """flup's FastCGI-to-WSGI gateway, without flup's socket and run loop.

  @param application: the WSGI application
  @param multiprocess: whether other processes serve the same socket
  @param max_connections: connections served at once, by all processes
      (the answer to FCGI_GET_VALUES)
  """

  request_class = _Request

  # Largest record flup writes, header included: 64 KiB of content, a
  # multiple of 8 so no padding is needed.  (Measured on a 1 GiB stream:
  # 16 KiB records were slower; a small socket buffer helps, see
  # _Connection.StartStreaming.)
  maxwrite = fcgi_base.FCGI_HEADER_LEN + 65528

  def __init__(self, application, multiprocess, max_connections):
    fcgi_base.BaseFCGIServer.__init__(self, application, multithreaded=True,
                                      multiprocess=multiprocess,
                                      debug=False)
    self.capability = {
      fcgi_base.FCGI_MAX_CONNS: max_connections,
      fcgi_base.FCGI_MAX_REQS: max_connections,
      fcgi_base.FCGI_MPXS_CONNS: 0,
    }

  def error(self, req):
    """Answer 500 without details; the traceback went to lighttpd's log."""
    req.stdout.write(b"Status: 500 Internal Server Error\r\n"
                     b"Content-Type: text/plain\r\n\r\n"
                     b"Internal error in the FastCGI backend\n")

  def ServeConnection(self, sock):
    """Serve every request arriving on one accepted connection."""
    _Connection(sock, None, self, None).run()
