"""The handler contract of Ganeti's HTTP server, run against every backend.

Whatever serves the request, a Ganeti handler must see the same request
object and its answers (results, errors, headers) must reach the client the
same way.
"""

import json
import os
import subprocess
import sys
import socket
import ssl
import threading
import time

import pytest

from ganeti import http as ganeti_http
from ganeti.http import server as http_server
from tests.conftest import SslParams

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
  os.path.abspath(__file__))))


class RecordingHandler(http_server.HttpServerHandler):
  """Answers with a JSON description of the request it saw."""

  def __init__(self):
    http_server.HttpServerHandler.__init__(self)
    self.seen = []

  def PreHandleRequest(self, req):
    req.private = {"pre": req.request_path}

  def HandleRequest(self, req):
    self.seen.append(req)
    req.resp_headers["X-Handled-By"] = "recording"
    return json.dumps({
      "method": req.request_method,
      "path": req.request_path,
      "content_type": req.request_headers.get("content-type"),
      "custom": req.request_headers.get("X-CUSTOM-header"),
      "body": req.request_body.decode("latin-1"),
      "body_type": type(req.request_body).__name__,
      "private": req.private,
    })


class JsonErrorHandler(http_server.HttpServerHandler):
  """Raises what the test puts in C{error}; formats errors as JSON (RAPI)."""

  error = None

  def HandleRequest(self, req):
    req.resp_headers["X-Only-On-Success"] = "yes"
    raise self.error

  @staticmethod
  def FormatErrorMessage(values):
    return (ganeti_http.HTTP_APP_JSON, json.dumps(values))


STATUS_EXCEPTIONS = [cls for cls in vars(ganeti_http).values()
                     if isinstance(cls, type)
                     and issubclass(cls, ganeti_http.HttpException)
                     and cls is not ganeti_http.HttpException]


def test_there_are_eighteen_status_exceptions():
  assert len(STATUS_EXCEPTIONS) == 18


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_request_reaches_handler_intact(serve, method):
  running = serve(RecordingHandler())
  body = b"\x00binary\xff body\r\n" if method != "GET" else None
  (status, headers, raw) = running.Request(
    method, "/2/instances?bulk=1&fields=a%20b", body=body,
    headers={"Content-Type": "application/json", "X-Custom-Header": "v1"})
  assert status == 200
  assert headers["X-Handled-By"] == "recording"
  seen = json.loads(raw)
  assert seen == {
    "method": method,
    "path": "/2/instances?bulk=1&fields=a%20b",
    "content_type": "application/json",
    "custom": "v1",
    "body": (body or b"").decode("latin-1"),
    "body_type": "bytes",
    "private": {"pre": "/2/instances?bulk=1&fields=a%20b"},
  }


def test_underscore_headers_cannot_pose_as_content_headers(serve):
  """lighttpd gives "Content_Length" the CGI name of "Content-Length"'s
  HTTP_ form; neither it nor "Content_Type" may reach the handler as a
  second Content-Length or Content-Type."""
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return json.dumps({
        "length": req.request_headers.get_all("Content-Length"),
        "type": req.request_headers.get_all("Content-Type"),
        "body": req.request_body.decode(),
      })
  (status, _, raw) = serve(Handler()).Request(
    "POST", "/", body=b"hello world",
    headers={"Content_Length": "1", "Content_Type": "text/evil",
             "Content-Type": "text/plain"})
  assert status == 200
  assert json.loads(raw) == {"length": ["11"], "type": ["text/plain"],
                             "body": "hello world"}


def test_str_result_is_sent_as_utf8(serve):
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return "gr\u00fc\u00df dich"
  (status, headers, raw) = serve(Handler()).Request("GET", "/")
  assert status == 200
  assert raw == "gr\u00fc\u00df dich".encode("utf-8")
  assert int(headers["Content-Length"]) == len(raw)


def test_handler_replaced_on_a_running_server_serves_next_request(serve):
  """Ganeti 3.2's own test_server.py replaces C{ganeti_handler} on a
  running server and expects the next request to reach the new one."""
  class Handler(http_server.HttpServerHandler):
    def __init__(self, answer):
      http_server.HttpServerHandler.__init__(self)
      self.answer = answer

    def HandleRequest(self, req):
      return self.answer
  running = serve(Handler(b"first"))
  assert running.Request("GET", "/")[2] == b"first"
  running.server.ganeti_handler = Handler(b"second")
  assert running.Request("GET", "/")[2] == b"second"


@pytest.mark.parametrize("exception_class", STATUS_EXCEPTIONS,
                         ids=lambda cls: cls.__name__)
def test_status_exception_gives_status_headers_and_error_page(serve,
                                                              exception_class):
  handler = JsonErrorHandler()
  handler.error = exception_class("it <failed>", headers={"X-Why": "test"})
  (status, headers, raw) = serve(handler).Request("GET", "/thing")
  assert status == exception_class.code
  assert headers["X-Why"] == "test"
  assert headers["Content-Type"] == ganeti_http.HTTP_APP_JSON
  assert "X-Only-On-Success" not in headers
  values = json.loads(raw)
  assert values["code"] == exception_class.code
  assert values["message"] == "it &lt;failed&gt;"
  assert values["explain"]


def test_exception_without_message_uses_reason_phrase(serve):
  handler = JsonErrorHandler()
  handler.error = ganeti_http.HttpNotFound()
  (status, _, raw) = serve(handler).Request("GET", "/")
  assert status == 404
  assert json.loads(raw)["message"] == "Not Found"


def test_default_error_page_is_html(serve):
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      raise ganeti_http.HttpForbidden("go away")
  (status, headers, raw) = serve(Handler()).Request("GET", "/")
  assert status == 403
  assert headers["Content-Type"] == http_server.DEFAULT_ERROR_CONTENT_TYPE
  assert b"go away" in raw and b"403" in raw


class _OddStatus(ganeti_http.HttpException):
  code = 99


@pytest.mark.parametrize("error", [ganeti_http.HttpException("no code"),
                                   _OddStatus("not a status")],
                         ids=["none", "99"])
def test_exception_without_a_usable_code_gives_500(serve, error):
  """HttpException itself has no code: still an answer, a 500."""
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      raise error
  running = serve(Handler())
  (status, _, raw) = running.Request("GET", "/")
  assert status == 500
  assert error.message.encode() in raw


def test_other_exception_gives_500_and_server_keeps_serving(serve, caplog):
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      if req.request_path == "/boom":
        raise KeyError("secret-internal-detail")
      return b"fine"
  running = serve(Handler())
  (status, _, raw) = running.Request("GET", "/boom")
  assert status == 500
  assert b"Traceback" not in raw
  assert "KeyError" in caplog.text
  for _ in range(3):
    assert running.Request("GET", "/ok")[::2] == (200, b"fine")


def test_non_string_result_gives_500(serve):
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return {"not": "a string"}
  (status, _, raw) = serve(Handler()).Request("GET", "/")
  assert status == 500
  assert b"return string type" in raw


def test_broken_error_formatter_still_answers(serve):
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      raise ganeti_http.HttpConflict("busy")

    @staticmethod
    def FormatErrorMessage(values):
      raise ValueError("formatter bug")
  (status, headers, raw) = serve(Handler()).Request("GET", "/")
  assert status == 409
  assert headers["Content-Type"] == http_server.DEFAULT_ERROR_CONTENT_TYPE
  assert b"busy" in raw


@pytest.mark.parametrize("error_page", [
  ("application/json", {"not": "text"}),
  ("text/plain\r\nX-Injected: yes", "busy"),
], ids=["body-not-text", "crlf-in-content-type"])
def test_unusable_error_page_gets_the_default_one(serve, error_page):
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      raise ganeti_http.HttpConflict("busy")

    @staticmethod
    def FormatErrorMessage(values):
      return error_page
  (status, headers, raw) = serve(Handler()).Request("GET", "/")
  assert status == 409
  assert "X-Injected" not in headers
  assert headers["Content-Type"] == http_server.DEFAULT_ERROR_CONTENT_TYPE
  assert b"busy" in raw


def test_error_message_that_is_not_a_str_is_sent_as_text(serve):
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      raise ganeti_http.HttpConflict(ValueError("busy"))
  (status, _, raw) = serve(Handler()).Request("GET", "/")
  assert status == 409
  assert b"busy" in raw


@pytest.mark.parametrize("method", ["PATCH", "OPTIONS"])
def test_unsupported_method_gives_501(serve, method):
  handler = RecordingHandler()
  (status, _, raw) = serve(handler).Request(method, "/")
  assert status == 501
  assert method.encode() in raw
  assert handler.seen == []


def test_oversized_body_announced_gives_413(serve):
  handler = RecordingHandler()
  running = serve(handler)
  connection = running.Connection()
  try:
    connection.putrequest("POST", "/upload")
    connection.putheader(
      "Content-Length",
      str(http_server.GanetiRequestHandler.MAX_REQUEST_BODY_SIZE + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413
  finally:
    connection.close()
  assert handler.seen == []


def test_oversized_body_sent_whole_still_gets_its_413(serve):
  """A client that sends its whole body before reading (Python's
  http.client) must get the 413 too: the server answers before reading
  the body, and closing with that body unread would reset the connection
  and throw the answer away."""
  handler = RecordingHandler()
  body = b"x" * (http_server.GanetiRequestHandler.MAX_REQUEST_BODY_SIZE + 1)
  (status, _, _) = serve(handler).Request("PUT", "/big", body=body)
  assert status == 413
  assert handler.seen == []


def test_body_at_the_limit_is_accepted(serve):
  handler = RecordingHandler()
  body = b"x" * http_server.GanetiRequestHandler.MAX_REQUEST_BODY_SIZE
  (status, _, raw) = serve(handler).Request("PUT", "/big", body=body)
  assert status == 200
  assert len(handler.seen[0].request_body) == len(body)


def test_invalid_content_length_gives_400(serve):
  handler = RecordingHandler()
  running = serve(handler)
  connection = running.Connection()
  try:
    connection.putrequest("POST", "/")
    connection.putheader("Content-Length", "abc")
    connection.endheaders()
    assert connection.getresponse().status == 400
  finally:
    connection.close()
  assert handler.seen == []


def test_ipv6_loopback(serve):
  (status, _, raw) = serve(RecordingHandler(), address="::1").Request(
    "POST", "/v6", body=b"six")
  assert status == 200
  assert json.loads(raw)["body"] == "six"


# Serves "::" in a network namespace of its own, whose only interface is
# its loopback: the wildcard address reaches nothing else.
_DUAL_STACK_SCRIPT = """
import http.client
from ganeti.http import server as http_server

class Handler(http_server.HttpServerHandler):
  def HandleRequest(self, req):
    return "ok"

server = http_server.HttpServer("::", 0, Handler(), daemon_name="test")
server.Start()
try:
  for host in ("127.0.0.1", "::1"):
    connection = http.client.HTTPConnection(host, server.server_address[1],
                                            timeout=10)
    connection.request("GET", "/")
    response = connection.getresponse()
    print(host, response.status, response.read().decode())
finally:
  server.Stop()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its"
                    " own needs root; CI runs as root")
def test_wildcard_ipv6_address_serves_ipv4_clients_too(backend, tmp_path):
  """Bound to "::", a server answers IPv4 clients too, as Python's servers
  do."""
  environment = dict(os.environ, PYTHONPATH=REPO,
                     GANETI_HTTP_BACKEND=backend,
                     GANETI_HTTP_BACKEND_CONFIG=str(tmp_path / "none"))
  result = subprocess.run(
    ["unshare", "--net", "sh", "-c",
     'ip link set lo up && exec "$0" -c "$1"', sys.executable,
     _DUAL_STACK_SCRIPT],
    env=environment, capture_output=True, text=True, timeout=60)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split("\n")[:2] == ["127.0.0.1 200 ok", "::1 200 ok"]


@pytest.mark.parametrize("backend", ["legacy"])
def test_busy_server_leaves_new_connections_to_the_kernel(serve):
  """With every worker busy, the legacy server accepts no more connections:
  they wait in the listen queue instead of costing a file descriptor (and
  memory) each.  (On the fastcgi backend lighttpd accepts them.)"""
  (started, proceed) = (threading.Event(), threading.Event())

  class BlockingHandler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      started.set()
      proceed.wait(30)
      return "done"

  running = serve(BlockingHandler(), max_clients=1)
  first = running.Connection()
  first.request("GET", "/")
  assert started.wait(10)  # the only worker is now busy with it
  open_before = len(os.listdir("/proc/self/fd"))
  waiting = [socket.create_connection((running.address, running.port))
             for _ in range(20)]
  try:
    time.sleep(0.5)
    # 20 client sockets in this process, and none on the server's side.
    assert len(os.listdir("/proc/self/fd")) - open_before == 20
    proceed.set()
    assert first.getresponse().read() == b"done"
    waiting[0].sendall(b"GET / HTTP/1.0\r\n\r\n")
    assert b" 200 " in waiting[0].recv(100).split(b"\r\n")[0]
  finally:
    proceed.set()
    first.close()
    for sock in waiting:
      sock.close()


def test_fifty_concurrent_requests(serve):
  class SlowHandler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return req.request_body[::-1]
  running = serve(SlowHandler(), max_clients=20)
  results = {}

  def _One(number):
    results[number] = running.Request("POST", "/n",
                                      body=b"request-%03d" % number)

  threads = [threading.Thread(target=_One, args=(n, )) for n in range(50)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join(30)
  assert sorted(results) == list(range(50))
  for (number, (status, _, raw)) in results.items():
    assert (status, raw) == (200, (b"request-%03d" % number)[::-1])


class TestClientCertificates(object):
  """TLS with client certificates: the node daemon's configuration."""

  @pytest.fixture
  def tls_server(self, serve, pki):
    self.digests = []
    self.accept = True

    def _Callback(digest):
      self.digests.append(digest)
      return self.accept

    return serve(RecordingHandler(), ssl_params=SslParams(pki.cluster),
                 ssl_verify_peer=True, ssl_verify_callback=_Callback)

  def test_certificate_signed_by_cluster_is_accepted(self, tls_server, pki):
    (status, _, raw) = tls_server.Request("POST", "/version", body=b"[]",
                                          client_cert=pki.node)
    assert status == 200
    assert json.loads(raw)["path"] == "/version"
    assert self.digests == [pki.node.digest]

  def test_cluster_certificate_itself_is_accepted(self, tls_server, pki):
    assert tls_server.Request("GET", "/", client_cert=pki.cluster)[0] == 200
    assert self.digests == [pki.cluster.digest]

  def test_callback_refusal_gives_403(self, tls_server, pki):
    self.accept = False
    (status, _, raw) = tls_server.Request("GET", "/", client_cert=pki.node)
    assert status == 403
    assert b"verification failed" in raw

  def test_no_certificate_is_refused(self, tls_server):
    with pytest.raises((ssl.SSLError, ConnectionError)):
      tls_server.Request("GET", "/")
    assert self.digests == []

  def test_certificate_of_another_ca_is_refused(self, tls_server, pki):
    with pytest.raises((ssl.SSLError, ConnectionError)):
      tls_server.Request("GET", "/", client_cert=pki.foreign)
    assert self.digests == []

  def test_server_keeps_serving_after_refusals(self, tls_server, pki):
    for credential in (None, pki.foreign):
      with pytest.raises((ssl.SSLError, ConnectionError)):
        tls_server.Request("GET", "/", client_cert=credential)
    assert tls_server.Request("GET", "/", client_cert=pki.node)[0] == 200


@pytest.mark.parametrize("backend", ["legacy"])
def test_tls_hello_sent_too_slowly_is_dropped(serve, pki, monkeypatch):
  """The TLS handshake must be over within request_head_timeout, however
  the client spreads its hello out.  (Legacy only: lighttpd has its own
  read timeouts.)"""
  monkeypatch.setattr(http_server.GanetiRequestHandler,
                      "request_head_timeout", 1)
  running = serve(RecordingHandler(), ssl_params=SslParams(pki.cluster))
  closed = False
  with socket.create_connection(("127.0.0.1", running.port),
                                timeout=10) as sock:
    # A handshake record announcing 512 bytes, sent a byte at a time.
    try:
      for byte in b"\x16\x03\x01\x02\x00" + b"\x01" * 40:
        sock.sendall(bytes([byte]))
        time.sleep(0.1)
      sock.settimeout(2)
      closed = sock.recv(100) == b""
    except ConnectionError:
      closed = True
    except socket.timeout:
      pass  # still waiting for the rest of the hello
  assert closed  # after 1 s, while the client was still sending
  assert running.Request("GET", "/")[0] == 200


def test_https_without_client_certificates(serve, pki):
  running = serve(RecordingHandler(), ssl_params=SslParams(pki.cluster))
  assert running.Request("GET", "/plain-tls")[0] == 200


@pytest.mark.parametrize("target,path", [
  ("//2/instances", "/2/instances"),
  ("///x?a=//b", "/x?a=//b"),
  ("http://node1.example.com/2/info?x=1", "/2/info?x=1"),
  ("https://node1.example.com:5080/x", "/x"),
])
def test_request_target_reaches_the_handler_as_a_path(serve, target, path):
  """Both backends hand the handler the same path: absolute-form targets
  lose scheme and host, leading slashes are collapsed."""
  (status, _, raw) = serve(RecordingHandler()).Request("GET", target)
  assert status == 200
  assert json.loads(raw)["path"] == path


def test_oversized_body_is_refused_before_it_is_sent(serve):
  """A client that asks first (Expect: 100-continue) gets its 413 at once,
  not a "100 Continue" for a body that will be refused."""
  size = http_server.GanetiRequestHandler.MAX_REQUEST_BODY_SIZE + 1
  running = serve(RecordingHandler())
  with socket.create_connection(("127.0.0.1", running.port),
                                timeout=10) as sock:
    sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\n"
                 b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n"
                 % size)
    answer = sock.recv(100)
  assert answer.startswith(b"HTTP/1.1 413 "), answer


@pytest.mark.parametrize("head", [
  b"Host: x\r\nContent-Length: \xb2\r\n",  # a non-ASCII digit
  b"Content-Length: 3\r\n",  # no Host
], ids=["length-not-a-number", "no-host"])
def test_malformed_request_with_expect_gets_400_at_once(serve, head):
  """A request that will be refused gets no "100 Continue" first (and a
  Content-Length of a non-ASCII digit is refused, not a crash)."""
  running = serve(RecordingHandler())
  with socket.create_connection(("127.0.0.1", running.port),
                                timeout=10) as sock:
    sock.sendall(b"POST /upload HTTP/1.1\r\nExpect: 100-continue\r\n" +
                 head + b"\r\n")
    answer = sock.recv(100)
  assert answer.startswith(b"HTTP/1.1 400 "), answer


def test_request_sock_answers_the_rapi_connection_check(serve):
  """Ganeti's RAPI asks request_sock.recv(0) whether its client has gone
  (on every poll of GET /2/os); both backends answer b"": still there."""
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return repr(req.request_sock.recv(0))
  assert serve(Handler()).Request("GET", "/2/os")[::2] == (200, b"b''")


def test_range_requests_get_the_whole_answer(serve):
  """Ganeti's server ignores Range; lighttpd would send part of the
  answer."""
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return "0123456789"
  (status, headers, raw) = serve(Handler()).Request(
    "GET", "/", headers={"Range": "bytes=2-4"})
  assert (status, raw) == (200, b"0123456789")
  assert "Content-Range" not in headers


def test_verify_peer_without_tls_serves_plain_http(serve):
  """Ganeti's node daemon passes ssl_verify_peer=True with --no-ssl too
  (ssl_params None): it starts and serves plain HTTP, certificates
  unasked for, as with Ganeti's own server."""
  running = serve(RecordingHandler(), ssl_verify_peer=True,
                  ssl_verify_callback=lambda _: False)
  assert running.Request("GET", "/")[0] == 200


def test_released_signature_is_accepted(backend, monkeypatch, tmp_path, pki):
  """Ganeti 3.0/3.1 call C{HttpServer(mainloop, addr, port, max, handler)}."""
  monkeypatch.setenv("GANETI_HTTP_BACKEND", backend)
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(tmp_path / "none"))
  calls = []

  def _ReleasedCallback(conn, cert, errnum, errdepth, ok):
    calls.append((conn, cert.digest("sha1"), errnum, errdepth, ok))
    return True

  server = http_server.HttpServer(object(), "127.0.0.1", 0, 5,
                                  RecordingHandler(),
                                  ssl_params=SslParams(pki.cluster),
                                  ssl_verify_peer=True,
                                  ssl_verify_callback=_ReleasedCallback,
                                  daemon_name="test")
  server.Start()
  try:
    from tests.conftest import RunningServer
    running = RunningServer(server, "127.0.0.1", True)
    assert running.Request("GET", "/", client_cert=pki.node)[0] == 200
  finally:
    server.Stop()
  assert calls == [(None, pki.node.digest.encode("ascii"), 0, 0, 1)]


@pytest.mark.parametrize("name,value", [("X-Injected", "a\r\nSet-Cookie: x=1"),
                                        ("Bad Name", "v"),
                                        ("X(b)", "v"),
                                        ("X-Nul", "a\x00b"),
                                        ("X-Euro", "\u20ac"),
                                        ("Status", "302 Found"),
                                        ("transfer-encoding", "chunked"),
                                        ("Connection", "close"),
                                        ("Upgrade", "h2c"),
                                        ("X-Sendfile", "/etc/passwd")])
def test_unsafe_response_header_gives_500(serve, name, value):
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      req.resp_headers[name] = value
      return b"body"
  running = serve(Handler())
  (status, headers, raw) = running.Request("GET", "/")
  assert status == 500
  assert "Set-Cookie" not in headers
  assert running.Request("GET", "/")[0] == 500


def test_unsafe_header_of_an_http_exception_is_dropped(serve):
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      raise ganeti_http.HttpUnauthorized(
        headers={"WWW-Authenticate": "Basic\r\nSet-Cookie: x=1",
                 "X-Fine": "yes"})
  (status, headers, _) = serve(Handler()).Request("GET", "/")
  assert status == 401
  assert headers["X-Fine"] == "yes"
  assert "Set-Cookie" not in headers and "WWW-Authenticate" not in headers
