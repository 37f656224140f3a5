"""Streamed responses and request bodies, the same on every backend."""

import gc
import hashlib
import http.client
import os
import queue
import socket
import struct
import threading
import time

import pytest

from ganeti import http as ganeti_http
from ganeti.http import server as http_server
from tests.raw_http import ReadUntilClosed


def _RawExchange(running, request, timeout=10):
  """Send raw request bytes; return everything read until the server
  closes, or raise the connection error it ended with."""
  with socket.create_connection((running.address, running.port),
                                timeout=timeout) as sock:
    sock.sendall(request)
    return ReadUntilClosed(sock)


class StreamingHandler(http_server.HttpServerHandler):
  """Paths choose what HandleRequest returns."""

  def __init__(self, tmp_path):
    http_server.HttpServerHandler.__init__(self)
    self.tmp_path = tmp_path
    self.proceed = threading.Event()
    self.closed = threading.Event()

  def HandleRequest(self, req):
    path = req.request_path
    if path == "/paced":
      return self._Paced()
    if path == "/forever":
      return self._Forever()
    if path == "/fast-forever":
      return self._Forever(chunk=b"x" * 65536, pause=0)
    if path == "/fails-midway":
      return self._FailsMidway()
    if path == "/fails-at-once":
      return self._FailsAtOnce()
    if path == "/file":
      target = self.tmp_path / "payload.bin"
      target.write_bytes(bytes(range(256)) * 4096)
      return open(str(target), "rb")
    if path == "/declared":
      req.resp_headers["Content-Length"] = "10"
      return iter([b"01234", "56789"])
    if path == "/declared-wrong":
      req.resp_headers["Content-Length"] = "100"
      return iter([b"short"])
    if path == "/empty":
      return iter([])
    if path == "/unencodable-midway":
      # A str chunk UTF-8 cannot encode (a lone surrogate, as from an
      # undecodable file name) fails after the response has started.
      return iter([b"partial;", "\udcff"])
    if path == "/bytes-subclass":
      return iter([_Bytes(b"first;"), _Bytes(b"second;")])
    if path == "/proc-file":
      return open("/proc/self/status", "rb")
    if path == "/sys-file":
      return open("/sys/devices/system/cpu/online", "rb")
    if path == "/text-file":
      target = self.tmp_path / "text.txt"
      target.write_text("some text")
      return open(str(target), "r")
    if path == "/bad-header":
      req.resp_headers["X-Bad"] = "split\r\nX-Injected: yes"
      return self._Forever()
    raise ganeti_http.HttpNotFound()

  def _Paced(self):
    yield b"first;"
    # The next chunk is produced only once the client has the first one.
    if not self.proceed.wait(10):
      yield b"timeout;"
    yield "second;"

  def _Forever(self, chunk=b"x" * 1024, pause=0.01):
    try:
      while True:
        yield chunk
        time.sleep(pause)
    finally:
      self.closed.set()

  @staticmethod
  def _FailsMidway():
    yield b"partial data that must not look complete"
    raise RuntimeError("disk went away")

  @staticmethod
  def _FailsAtOnce():
    raise ganeti_http.HttpNotFound("no such export")
    yield b"never"  # pylint: disable=unreachable


class _Bytes(bytes):
  """A subclass of bytes (flup accepts only bytes itself)."""


@pytest.fixture
def streaming(serve, tmp_path):
  handler = StreamingHandler(tmp_path)
  return (serve(handler), handler)


def test_chunks_arrive_as_they_are_produced(streaming):
  (running, handler) = streaming
  connection = running.Connection()
  connection.request("GET", "/paced")
  response = connection.getresponse()
  assert response.status == 200
  assert response.getheader("Transfer-Encoding") == "chunked"
  assert response.read1(100) == b"first;"
  handler.proceed.set()
  assert response.read() == b"second;"
  connection.close()


def test_http10_client_gets_a_connection_delimited_body(streaming):
  (running, handler) = streaming
  handler.proceed.set()
  raw = _RawExchange(running, b"GET /paced HTTP/1.0\r\n\r\n")
  (head, _, body) = raw.partition(b"\r\n\r\n")
  assert head.startswith(b"HTTP/1.") and b" 200 " in head.split(b"\r\n")[0]
  assert b"chunked" not in head.lower()
  assert body == b"first;second;"


def test_client_disconnect_closes_the_generator(streaming):
  (running, handler) = streaming
  with socket.create_connection((running.address, running.port),
                                timeout=10) as sock:
    sock.sendall(b"GET /forever HTTP/1.1\r\nHost: x\r\n\r\n")
    assert sock.recv(65536)
  assert handler.closed.wait(15)


def _AssertCutShort(running, path):
  """GET C{path}: a 200 whose body the client must see as incomplete."""
  connection = running.Connection()
  try:
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 200
    with pytest.raises((http.client.IncompleteRead, ConnectionError)):
      response.read()
  finally:
    connection.close()


def test_error_midway_is_visible_to_the_client(streaming, backend, caplog):
  (running, _) = streaming
  _AssertCutShort(running, "/fails-midway")
  running.server.Stop()  # its threads are done: all is logged
  assert "Response body failed after the response started" in caplog.text
  if backend == "legacy":
    assert "Aborting response to GET /fails-midway" in caplog.text
  # ... and nothing more: no error from the server itself.
  assert "Error while serving" not in caplog.text


def test_unencodable_chunk_midway_is_visible_to_the_client(streaming):
  _AssertCutShort(streaming[0], "/unencodable-midway")


def test_chunks_of_a_bytes_subclass_are_sent(streaming):
  (running, _) = streaming
  assert running.Request("GET", "/bytes-subclass")[::2] == (
    200, b"first;second;")


def test_proc_and_sys_files_are_sent_whole(streaming):
  """/proc files claim a size of 0, /sys files 4096; their contents are
  sent all the same (as streams of unknown length)."""
  (running, _) = streaming
  (status, _, raw) = running.Request("GET", "/proc-file")
  assert status == 200
  assert raw.startswith(b"Name:")
  (status, _, raw) = running.Request("GET", "/sys-file")
  assert status == 200
  with open("/sys/devices/system/cpu/online", "rb") as handle:
    assert raw == handle.read()


def test_text_file_result_is_a_clear_500(streaming):
  """Only binary files are bodies; a text file used to spin forever (its
  read() returns "", never the b"" that ended the loop)."""
  (running, _) = streaming
  (status, _, raw) = running.Request("GET", "/text-file")
  assert status == 500
  assert b"binary mode" in raw


def test_body_is_closed_when_the_headers_are_refused(streaming):
  """The generator's finally runs when the 500 replaces its body, not when
  the garbage collector finds it (collection is off meanwhile)."""
  (running, handler) = streaming
  gc.disable()
  try:
    (status, _, _) = running.Request("GET", "/bad-header")
    assert status == 500
    assert handler.closed.wait(5)
  finally:
    gc.enable()


def test_error_midway_visible_to_http10_client(streaming, backend):
  """An HTTP/1.0 body ends where the connection does: only a reset can say
  it is incomplete.  lighttpd closes normally there (a documented
  limitation of the fastcgi backend; Ganeti's clients speak HTTP/1.1)."""
  (running, _) = streaming
  if backend == "fastcgi":
    raw = _RawExchange(running, b"GET /fails-midway HTTP/1.0\r\n\r\n")
    assert raw.endswith(b"partial data that must not look complete")
    return
  with pytest.raises(ConnectionResetError):
    _RawExchange(running, b"GET /fails-midway HTTP/1.0\r\n\r\n")


@pytest.mark.parametrize("backend", ["legacy"])
def test_client_too_slow_for_the_write_timeout_gets_a_reset(streaming,
                                                           monkeypatch):
  """When a client stops reading until the server's write times out, an
  HTTP/1.0 body must not end with a clean close.  (Legacy only: on the
  fastcgi backend lighttpd's own write timeout applies.)"""
  (running, handler) = streaming
  monkeypatch.setattr(http_server.GanetiRequestHandler, "timeout", 1)
  with socket.socket() as sock:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((running.address, running.port))
    sock.sendall(b"GET /fast-forever HTTP/1.0\r\n\r\n")
    assert sock.recv(4096)
    assert handler.closed.wait(10)  # the write timed out, the stream ended
    with pytest.raises(ConnectionResetError):
      while sock.recv(65536):
        pass


@pytest.mark.parametrize("backend", ["legacy"])
def test_request_head_sent_too_slowly_is_dropped(streaming, monkeypatch):
  """A client may not spread its request line and headers over more than
  request_head_timeout, even with every byte inside the socket timeout.
  (Legacy only: lighttpd has its own read timeouts.)"""
  (running, _) = streaming
  monkeypatch.setattr(http_server.GanetiRequestHandler,
                      "request_head_timeout", 1)
  with socket.create_connection((running.address, running.port),
                                timeout=10) as sock:
    answer = b""
    try:
      for byte in b"GET /empty HTTP/1.0\r\nX-Slow: yes\r\n\r\n":
        sock.sendall(bytes([byte]))
        time.sleep(0.1)
      answer = sock.recv(100)
    except ConnectionError:
      pass
  assert answer == b""  # closed without an answer: no 200 after 3.6 s
  assert running.Request("GET", "/empty")[0] == 200


def test_error_before_first_chunk_gets_its_status(streaming):
  (running, _) = streaming
  (status, _, raw) = running.Request("GET", "/fails-at-once")
  assert status == 404
  assert b"no such export" in raw


def test_file_result_has_content_length(streaming):
  (running, _) = streaming
  (status, headers, raw) = running.Request("GET", "/file")
  assert status == 200
  assert raw == bytes(range(256)) * 4096
  assert int(headers["Content-Length"]) == len(raw)


def test_declared_content_length_is_used(streaming):
  (running, _) = streaming
  (status, headers, raw) = running.Request("GET", "/declared")
  assert (status, raw) == (200, b"0123456789")
  assert headers["Content-Length"] == "10"
  assert "Transfer-Encoding" not in headers


def test_wrong_declared_length_is_not_a_clean_body(streaming):
  _AssertCutShort(streaming[0], "/declared-wrong")


def test_empty_stream(streaming):
  (running, _) = streaming
  assert running.Request("GET", "/empty")[::2] == (200, b"")


class UploadHandler(http_server.HttpServerHandler):
  """Hashes the request body as it arrives."""

  STREAM_REQUEST_BODY = True

  def HandleRequest(self, req):
    assert req.request_body is None
    digest = hashlib.sha256()
    for data in iter(lambda: req.request_body_stream.read(1 << 20), b""):
      digest.update(data)
    return digest.hexdigest()


class LimitedUploadHandler(UploadHandler):
  REQUEST_BODY_LIMIT = 1024 * 1024


def _Generated(size, block=1 << 20):
  """C{size} bytes of a repeatable pattern, in blocks, and their hash."""
  digest = hashlib.sha256()
  blocks = []
  pattern = os.urandom(block)
  for offset in range(0, size, block):
    blocks.append(pattern[:min(block, size - offset)])
    digest.update(blocks[-1])
  return (blocks, digest.hexdigest())


def test_streamed_upload_beyond_the_buffered_limit(serve):
  running = serve(UploadHandler())
  size = 64 * 1024 * 1024 + 17
  (blocks, expected) = _Generated(size)
  connection = running.Connection(timeout=60)
  connection.putrequest("PUT", "/import")
  connection.putheader("Content-Length", str(size))
  connection.endheaders()
  for block in blocks:
    connection.send(block)
  response = connection.getresponse()
  assert (response.status, response.read().decode()) == (200, expected)
  connection.close()


def test_streamed_upload_over_the_handler_limit_gets_413(serve):
  running = serve(LimitedUploadHandler())
  (status, _, _) = running.Request("PUT", "/import",
                                   body=b"y" * (2 * 1024 * 1024))
  assert status == 413


class RecordingUploadHandler(UploadHandler):
  """Records what reading the body raised."""

  def __init__(self):
    UploadHandler.__init__(self)
    self.errors = queue.Queue()

  def HandleRequest(self, req):
    try:
      return UploadHandler.HandleRequest(self, req)
    except Exception as err:
      self.errors.put(err)
      raise


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_client_leaving_mid_upload_is_an_http_error(serve, reset):
  """Both backends tell the handler the same thing when a client goes away
  in the middle of its body: an HttpBadRequest, not their transport's own
  error (flup's EOFError, a ConnectionResetError)."""
  handler = RecordingUploadHandler()
  running = serve(handler)
  with socket.create_connection((running.address, running.port)) as sock:
    sock.sendall(b"PUT /import HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 1000000\r\n\r\n" + b"x" * 1000)
    time.sleep(0.2)  # the handler is reading; not needed for correctness
    if reset:
      sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                      struct.pack("ii", 1, 0))
  error = handler.errors.get(timeout=30)
  assert isinstance(error, ganeti_http.HttpBadRequest), repr(error)
  assert running.Request("PUT", "/import", body=b"abc")[0] == 200


@pytest.mark.parametrize("backend", ["legacy"])
def test_stalled_request_body_gets_408(serve, monkeypatch):
  """A client that stops sending its body gets 408 once the socket timeout
  passes, and a log line, not a 500 with a traceback.  (Legacy only:
  lighttpd closes such a connection after its own read timeout.)"""
  monkeypatch.setattr(http_server.GanetiRequestHandler, "timeout", 1)

  class Echo(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return req.request_body
  running = serve(Echo())
  with socket.create_connection((running.address, running.port),
                                timeout=10) as sock:
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 10\r\n\r\n12345")
    answer = sock.recv(100)
  assert answer.startswith(b"HTTP/1.1 408 ")


def test_chunked_upload_to_streaming_handler(serve):
  running = serve(UploadHandler())
  raw = _RawExchange(running, b"PUT /import HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
                     b"\r\n5\r\nhello\r\n0\r\n\r\n")
  assert raw.split(b"\r\n")[0].split(b" ")[1] == b"200"
  assert raw.endswith(hashlib.sha256(b"hello").hexdigest().encode())


def test_chunked_upload_to_buffered_handler_is_dechunked(serve):
  class Echo(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return req.request_body
  running = serve(Echo())
  raw = _RawExchange(running, b"POST /echo HTTP/1.1\r\nHost: x\r\n"
                     b"Transfer-Encoding: chunked\r\nConnection: close\r\n"
                     b"\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
  assert raw.split(b"\r\n")[0].split(b" ")[1] == b"200"
  assert raw.endswith(b"hello world")


@pytest.mark.parametrize("backend", ["legacy"])
@pytest.mark.parametrize("lines,status", [(64, b"200"), (65, b"400"),
                                          (1000, b"400")])
def test_endless_chunked_trailers_are_refused(serve, lines, status):
  """Trailers are skipped, up to 64 lines.  (Legacy only: lighttpd
  de-chunks bodies itself on the fastcgi backend, and takes more.)"""
  class Echo(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return req.request_body
  trailers = b"X-Trailer: yes\r\n" * lines
  raw = _RawExchange(serve(Echo()),
                     b"POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                     b"0\r\n" + trailers + b"\r\n")
  assert raw.split(b"\r\n")[0].split(b" ")[1] == status
  if status == b"400":
    assert b"trailer" in raw


@pytest.mark.parametrize("request_bytes", [
  b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
  b"Content-Length: 5\r\nConnection: close\r\n\r\n0\r\n\r\n",
  b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
  b"Connection: close\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
  b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n"
  b"Content-Length: 5\r\nConnection: close\r\n\r\nhello",
  b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
  b"Content-Length: 5\r\nConnection: close\r\n\r\nhello",
  b"POST / HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
  b"\r\n5\r\nhello\r\n0\r\n\r\n",
], ids=["length-and-chunked", "bad-chunk-size", "two-lengths",
        "repeated-length", "chunked-in-http-1.0"])
def test_ambiguous_framing_is_refused(serve, request_bytes):
  class Echo(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return req.request_body
  raw = _RawExchange(serve(Echo()), request_bytes)
  assert raw.split(b"\r\n")[0].split(b" ")[1] == b"400"
