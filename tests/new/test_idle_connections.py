"""Connections that never finish their first request must not lock a valid
client out of the fastcgi backend (issue 14, docs/lighttpd.md "Limits").

lighttpd 1.4.69 has no per-address limit before a request head is read
(mod_evasive is gone since 1.4.68 and only ever counted requests), so the
protection is room (C{server.max-fds}, C{server.max-connections}) and a
short C{server.max-read-idle} for connections still in the TLS handshake
or their first request head.
"""

import resource
import socket
import threading
import time

import pytest

from bench.idle_flood import ClientHello
from ganeti.http import server as http_server
from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.backends.fastcgi.lighttpd import limits as lighttpd_limits
from tests.conftest import SslParams

#: Connections held from 127.0.0.1: more than lighttpd's default limit
#: (1365 connections for its default 4096 file descriptors) plus the
#: daemon's listen backlog (1024) can hold.
IDLE_CONNECTIONS = 2500

#: Generous: a valid request is answered in milliseconds on loopback.
VALID_REQUEST_TIMEOUT = 30

#: Much less than lighttpd's own 60 s read timeout.
CLOSED_WITHIN = 30

#: Seconds a keep-alive connection waits between two requests: longer than
#: the read timeout (and lighttpd's one-second clock), shorter than
#: keep_alive_idle.
_KEPT_IDLE = lighttpd_config.DEFAULT_READ_IDLE_TIMEOUT + 3
assert _KEPT_IDLE < lighttpd_config.DEFAULT_KEEP_ALIVE_IDLE


class AnswerHandler(http_server.HttpServerHandler):
  """Answers "ok"; C{/slow} waits until C{release} is set."""

  def __init__(self):
    http_server.HttpServerHandler.__init__(self)
    self.release = threading.Event()

  def HandleRequest(self, req):
    if req.request_path == "/slow":
      self.release.wait(CLOSED_WITHIN + 10)
    return "ok"


def _ServeWithClientCertificates(fastcgi, pki, handler):
  """A server as Ganeti's node daemon is: TLS, client certificate needed."""
  return fastcgi(handler, ssl_params=SslParams(pki.cluster),
                 ssl_verify_peer=True,
                 ssl_verify_callback=lambda digest: digest == pki.node.digest)


class TricklingConnections(object):
  """Connections from 127.0.0.1 that send a ClientHello one byte a second:
  never idle long enough for a read timeout, never done with the
  handshake."""

  def __init__(self, port, count):
    self._hello = ClientHello()
    self._sockets = []
    self._stop = threading.Event()
    for _ in range(count):
      sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      sock.setblocking(False)
      self._sockets.append(sock)
      sock.connect_ex(("127.0.0.1", port))
    self._thread = threading.Thread(target=self._Trickle, daemon=True)
    self._thread.start()

  def _Trickle(self):
    sent = 0
    while not self._stop.wait(1.0) and sent < len(self._hello):
      for sock in self._sockets:
        try:
          sock.send(self._hello[sent:sent + 1])
        except OSError:
          pass   # not (yet) connected, or closed by the server
      sent += 1

  def Close(self):
    """Stop trickling and close every connection."""
    self._stop.set()
    self._thread.join()
    for sock in self._sockets:
      sock.close()


def _ValidRequest(running, pki, path="/"):
  """Status and body of a request with the node certificate."""
  connection = running.Connection(client_cert=pki.node,
                                  timeout=VALID_REQUEST_TIMEOUT)
  try:
    connection.request("GET", path)
    response = connection.getresponse()
    return (response.status, response.read())
  finally:
    connection.close()


@pytest.fixture
def enough_fds():
  """This process may open L{IDLE_CONNECTIONS} more files (raising the hard
  limit too if needed, which needs root); the old limits come back."""
  limits = resource.getrlimit(resource.RLIMIT_NOFILE)
  wanted = IDLE_CONNECTIONS + 512
  if limits[0] < wanted:
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (wanted, max(wanted, limits[1])))
  yield
  resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def test_valid_client_served_while_one_address_holds_many(fastcgi, pki,
                                                           enough_fds):
  running = _ServeWithClientCertificates(fastcgi, pki, AnswerHandler())
  flood = TricklingConnections(running.port, IDLE_CONNECTIONS)
  try:
    time.sleep(2)  # lighttpd accepts them (or its backlog fills up)
    assert _ValidRequest(running, pki) == (200, b"ok")
  finally:
    flood.Close()


def _Closed(sock, deadline):
  """Whether the server closes C{sock} before C{deadline}."""
  while time.monotonic() < deadline:
    sock.settimeout(max(0.1, deadline - time.monotonic()))
    try:
      if not sock.recv(65536):
        return True
    except ConnectionResetError:
      return True
    except socket.timeout:
      return False
  return False


def test_unfinished_handshakes_and_heads_closed_early(fastcgi, pki):
  """A connection silent in the TLS handshake or in its first request head
  is closed long before lighttpd's default minute; a keep-alive connection
  silent as long between two requests is not, and a request the handler
  takes that long to answer is still answered."""
  handler = AnswerHandler()
  tls = _ServeWithClientCertificates(fastcgi, pki, handler)
  plain = fastcgi(AnswerHandler())
  kept = tls.Connection(client_cert=pki.node, timeout=VALID_REQUEST_TIMEOUT)
  kept.request("GET", "/")
  assert kept.getresponse().read() == b"ok"
  kept_socket = kept.sock
  kept_since = time.monotonic()
  silent = socket.create_connection(("127.0.0.1", tls.port))
  in_handshake = socket.create_connection(("127.0.0.1", tls.port))
  in_handshake.sendall(ClientHello())
  in_head = socket.create_connection(("127.0.0.1", plain.port))
  in_head.sendall(b"GET / HTTP/1.1\r\nHost: node1\r\n")
  slow = {}
  slow_request = threading.Thread(
    target=lambda: slow.update(answer=_ValidRequest(tls, pki, "/slow")))
  slow_request.start()
  try:
    deadline = time.monotonic() + CLOSED_WITHIN
    closed = [_Closed(sock, deadline)
              for sock in (silent, in_handshake, in_head)]
    # Idle longer than any of them, but less than keep_alive_idle
    time.sleep(max(0, kept_since + _KEPT_IDLE - time.monotonic()))
    kept.request("GET", "/")
    assert kept.getresponse().read() == b"ok"
    assert kept.sock is kept_socket
  finally:
    handler.release.set()
    slow_request.join()
    kept.close()
    for sock in (silent, in_handshake, in_head):
      sock.close()
  assert closed == [True, True, True]
  assert slow["answer"] == (200, b"ok")


def test_rendered_limits():
  settings = lighttpd_config.FrontendSettings(
    bind_address="127.0.0.1", port=1811, fastcgi_socket="/run/x.sock",
    state_dir="/run/x", max_fds=20000)
  lines = lighttpd_config.Render(settings).splitlines()
  assert "server.max-fds = 20000" in lines
  assert "server.max-connections = 10000" in lines
  assert ("server.max-read-idle = %d" %
          lighttpd_config.DEFAULT_READ_IDLE_TIMEOUT) in lines
  assert lighttpd_limits.MaxConnections(lighttpd_limits.MAX_FDS) == 16384
  default = lighttpd_config.Render(lighttpd_config.FrontendSettings(
    bind_address="127.0.0.1", port=1811, fastcgi_socket="/run/x.sock",
    state_dir="/run/x"))
  assert "server.max-fds" not in default
  assert "server.max-connections" not in default
  with pytest.raises(ValueError):
    lighttpd_config.FrontendSettings(
      bind_address="127.0.0.1", port=1811, fastcgi_socket="/run/x.sock",
      state_dir="/run/x", max_fds=lighttpd_limits.MAX_FDS + 1)


def test_reachable_max_fds_within_the_hard_limit():
  """What the daemon asks lighttpd for is what lighttpd can have: here,
  the hard limit unless this process may raise it."""
  hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
  reachable = lighttpd_limits.ReachableMaxFds()
  assert reachable <= lighttpd_limits.MAX_FDS
  if reachable < lighttpd_limits.MAX_FDS:
    assert reachable == hard
