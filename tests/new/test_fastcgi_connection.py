"""The fastcgi backend's FastCGI side, driven over its real Unix socket by a
raw FastCGI client written here (as lighttpd would talk to it).

Records are encoded and decoded by this file's own helpers (see
tests/new/test_fastcgi_records.py), not by the code under test.
"""

import json
import logging
import os
import socket
import struct
import threading

import pytest

from ganeti.http.backends.fastcgi import flup_gateway as fastcgi_backend
from ganeti.http.backends.fastcgi import listener as fastcgi_listener
from ganeti.http.core import pipeline
from ganeti.http import server as http_server
from ganeti.http.backends.fastcgi import wsgi_application as wsgi_adapter

from tests.new.test_fastcgi_records import Pair, Record

BEGIN_REQUEST = 1
END_REQUEST = 3
PARAMS = 4
STDIN = 5
STDOUT = 6
GET_VALUES = 9
GET_VALUES_RESULT = 10
UNKNOWN_TYPE = 11


class Handler(http_server.HttpServerHandler):
  """/small: 5 bytes; /empty: none; /stream: two chunks, no length;
  /echo: the request body; /headers: the request headers as JSON."""

  STREAM_REQUEST_BODY = False

  def HandleRequest(self, req):
    if req.request_path == "/small":
      return b"hello"
    if req.request_path == "/empty":
      return b""
    if req.request_path == "/stream":
      return iter([b"first ", b"second"])
    if req.request_path == "/echo":
      return req.request_body
    if req.request_path == "/headers":
      return json.dumps(dict(req.request_headers.items())).encode()
    raise http_server.http.HttpNotFound()


def _Gateway():
  request_pipeline = pipeline.RequestPipeline(
    pipeline.ClientCertificatePolicy(False, None))
  handler = Handler()
  return fastcgi_backend.FlupGateway(
    wsgi_adapter.WsgiApplication(request_pipeline, lambda: handler,
                                 tls=False),
    multiprocess=False, max_connections=2)


@pytest.fixture
def fastcgi_socket(tmp_path):
  """The path of a served FastCGI socket (two threads)."""
  path = str(tmp_path / "fcgi.sock")
  listen_socket = fastcgi_listener.BindUnixSocket(path)
  listener = fastcgi_listener.FastCgiListener(_Gateway(), listen_socket, 2)
  thread = threading.Thread(target=listener.Serve, daemon=True)
  thread.start()
  yield path
  listener.Stop()
  thread.join(10)
  listen_socket.close()
  assert not thread.is_alive()


def Params(method, path, body=b"", **extra):
  """The FCGI_PARAMS stream lighttpd sends for a request."""
  variables = {"REQUEST_METHOD": method, "REQUEST_URI": path,
               "SERVER_PROTOCOL": "HTTP/1.1", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "1811", "CONTENT_LENGTH": str(len(body))}
  variables.update(extra)
  return b"".join(Pair(name.encode(), value.encode())
                  for (name, value) in variables.items())


def RequestBytes(params, stdin_chunks, request_id=1):
  """Begin, parameters (one record), body records, end of body."""
  return (Record(BEGIN_REQUEST, struct.pack("!HB5x", 1, 0), request_id) +
          Record(PARAMS, params, request_id) +
          Record(PARAMS, b"", request_id) +
          b"".join(Record(STDIN, chunk, request_id)
                   for chunk in stdin_chunks) +
          Record(STDIN, b"", request_id))


class RecordReader(object):
  """Reads records from a socket, remembering what each recv() returned."""

  def __init__(self, sock):
    self.sock = sock
    self.buffer = b""

  def Next(self):
    """The next (type, request id, content), or None at the end."""
    while True:
      if len(self.buffer) >= 8:
        (_, record_type, request_id, length, padding) = struct.unpack(
          "!BBHHBx", self.buffer[:8])
        end = 8 + length + padding
        if len(self.buffer) >= end:
          content = self.buffer[8:8 + length]
          self.buffer = self.buffer[end:]
          return (record_type, request_id, content)
      data = self.sock.recv(65536)
      if not data:
        assert not self.buffer, "connection closed inside a record"
        return None
      self.buffer += data

  def All(self):
    """Every record until the server closes the connection."""
    return list(iter(self.Next, None))


def Exchange(path, request):
  """Send C{request}; return every record until the server closes."""
  with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
    client.settimeout(10)
    client.connect(path)
    client.sendall(request)
    return RecordReader(client).All()


def _Response(records):
  """The CGI response: the STDOUT contents up to the empty record, which
  must come right before FCGI_END_REQUEST, the last record."""
  assert [record_type for (record_type, _, _) in records[-2:]] == [
    STDOUT, END_REQUEST]
  assert records[-2][2] == b""
  assert records[-1][2] == struct.pack("!IB3x", 0, 0)  # complete, status 0
  assert all(record_type == STDOUT for (record_type, _, _) in records[:-2])
  return b"".join(content for (_, _, content) in records[:-2])


def _SentMessages(path):
  """Serve one request over a SOCK_SEQPACKET pair, where each send of the
  server arrives as a message of its own: the server's sends, as lists of
  records."""
  (client, server) = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
  thread = threading.Thread(target=_Gateway().ServeConnection,
                            args=(server, ))
  messages = []
  with client, server:
    client.settimeout(10)
    thread.start()
    client.send(RequestBytes(Params("GET", path), []))
    while True:
      reader = RecordReader(None)
      reader.buffer = client.recv(1 << 20)
      if not reader.buffer:
        break
      records = []
      while reader.buffer:  # a message holds whole records
        records.append(reader.Next())
      messages.append(records)
      if messages[-1][-1][0] == END_REQUEST:
        break
    client.close()
    thread.join(10)
  assert not thread.is_alive()
  return messages


def test_small_response_and_its_end_go_out_together():
  """lighttpd closes the connection once it has a body's Content-Length
  bytes, so the end of the request must go out with the body, not after
  it (where it found a closed socket, for every request)."""
  messages = _SentMessages("/small")
  assert len(messages) == 1
  records = messages[0]
  assert [record[0] for record in records] == [STDOUT, STDOUT, END_REQUEST]
  (status, _, body) = records[0][2].partition(b"\r\n")
  assert status == b"Status: 200 OK"
  assert b"Content-Length: 5\r\n" in body and body.endswith(b"\r\n\r\nhello")


def test_streamed_chunks_go_out_as_they_come():
  messages = _SentMessages("/stream")
  contents = [[content for (_, _, content) in message]
              for message in messages]
  # Each chunk in a send of its own, as it comes (the CGI headers with
  # the first), then the end of the stream and of the request.
  assert contents[0][0].endswith(b"\r\n\r\nfirst ")
  assert contents[1] == [b"second"]
  assert b"".join(b"".join(message) for message in contents[2:]) == (
    struct.pack("!IB3x", 0, 0))
  assert messages[-1][-1][0] == END_REQUEST


@pytest.mark.parametrize("path, body", [("/small", b"hello"),
                                        ("/empty", b""),
                                        ("/stream", b"first second")])
def test_responses_end_once(fastcgi_socket, path, body):
  records = Exchange(fastcgi_socket, RequestBytes(Params("GET", path), []))
  response = _Response(records)
  assert response.startswith(b"Status: 200 OK\r\n")
  assert response.endswith(b"\r\n\r\n" + body)
  assert sum(1 for record in records if record[0] == END_REQUEST) == 1


def test_body_in_many_records(fastcgi_socket):
  chunks = [os.urandom(size) for size in (1, 7, 8, 9, 4000, 65535, 3)]
  body = b"".join(chunks)
  records = Exchange(fastcgi_socket, RequestBytes(
    Params("POST", "/echo", body), chunks))
  assert _Response(records).endswith(b"\r\n\r\n" + body)


def test_request_sent_one_byte_at_a_time(fastcgi_socket):
  request = RequestBytes(Params("POST", "/echo", b"abc"), [b"a", b"bc"])
  with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
    client.settimeout(10)
    client.connect(fastcgi_socket)
    for position in range(len(request)):
      client.send(request[position:position + 1])
    records = RecordReader(client).All()
  assert _Response(records).endswith(b"\r\n\r\nabc")


def test_params_split_inside_a_pair(fastcgi_socket):
  """The FCGI_PARAMS stream is one byte stream: a pair may straddle two
  records (flup's own decoder required each record to hold whole pairs)."""
  params = Params("GET", "/headers", HTTP_X_LONG_HEADER="z" * 500)
  middle = params.index(b"X_LONG_HEADER") + 5
  request = (Record(BEGIN_REQUEST, struct.pack("!HB5x", 1, 0)) +
             Record(PARAMS, params[:middle]) +
             Record(PARAMS, params[middle:]) + Record(PARAMS, b"") +
             Record(STDIN, b""))
  response = _Response(Exchange(fastcgi_socket, request))
  headers = json.loads(response.split(b"\r\n\r\n", 1)[1])
  assert headers["X-Long-Header"] == "z" * 500


def test_not_fastcgi_is_dropped_and_logged(fastcgi_socket, caplog):
  with caplog.at_level(logging.ERROR):
    assert Exchange(fastcgi_socket, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == []
  assert "Error on a FastCGI connection" in caplog.text
  assert "version" in caplog.text
  # ... and the next connection is served.
  records = Exchange(fastcgi_socket, RequestBytes(Params("GET", "/small"),
                                                   []))
  assert _Response(records).endswith(b"hello")


def test_endless_params_are_refused(fastcgi_socket, caplog):
  """A parameter stream that never ends cannot grow without bound: past
  MAX_PARAMS_SIZE the connection is dropped and logged."""
  record = Record(PARAMS, b"x" * 65528)
  with caplog.at_level(logging.ERROR):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
      client.settimeout(10)
      client.connect(fastcgi_socket)
      client.sendall(Record(BEGIN_REQUEST, struct.pack("!HB5x", 1, 0)))
      # The backend closes: EPIPE or reset (not a timeout).
      with pytest.raises(ConnectionError):
        for _ in range(2 * fastcgi_backend.MAX_PARAMS_SIZE // 65528):
          client.sendall(record)
  assert "FCGI_PARAMS stream over" in caplog.text


def test_management_records(fastcgi_socket):
  with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
    client.settimeout(10)
    client.connect(fastcgi_socket)
    client.sendall(Record(GET_VALUES, Pair(b"FCGI_MPXS_CONNS", b"") +
                          Pair(b"FCGI_MAX_CONNS", b"") +
                          Pair(b"NO_SUCH_VALUE", b""), request_id=0) +
                   Record(99, b"", request_id=0))
    reader = RecordReader(client)
    (values, unknown) = (reader.Next(), reader.Next())
  assert values == (GET_VALUES_RESULT, 0, Pair(b"FCGI_MPXS_CONNS", b"0") +
                    Pair(b"FCGI_MAX_CONNS", b"2"))
  assert unknown == (UNKNOWN_TYPE, 0, bytes([99]) + b"\0" * 7)
