"""Which requests of ganeti.http.client wait for "100 Continue"
(L{ganeti.http.client_expect}).

On both backends with Ganeti 3.0's RPC headers (an empty C{Expect:}): the
fastcgi backend keeps connections, so from its first answer on a PUT asks
for "100 Continue" and lighttpd answers it before the body goes out; the
legacy backend closes every connection, as Ganeti's own server does, and
is never asked.  A server like Ganeti 3.0's (never "100 Continue",
C{Connection: close}) is never asked either: with the wait made longer
than the requests' timeout, a request that asked it would fail.  What the
client learns and forgets is checked against a scripted server.  How the
guard saves a request from lighttpd's graceful stop:
tests/new/test_kept_connection_graceful_stop.py.
"""

import collections
import io
import os
import socket
import ssl
import subprocess
import sys

import pycurl
import pytest

from ganeti.http import client
from ganeti.http import client_connections
from ganeti.http import client_expect
from ganeti.http import server as http_server

from bench.cluster_master import RpcCurlConfig
from tests import ganeti_package
from tests.conftest import SslParams
from tests.new.lighttpd_helpers import FreePort
from tests.thread_per_connection import ThreadPerConnection

#: Ganeti 3.0's RPC client's headers (lib/rpc/node.py)
_RPC_HEADERS = ["Content-type: application/json", "Expect:"]


@pytest.fixture(autouse=True)
def _FreshClient(monkeypatch):
  """Connections kept, nothing kept or known from other tests."""
  monkeypatch.setattr(client_connections, "_pool",
                      client_connections.ConnectionPool())
  monkeypatch.setattr(client_connections, "_enabled", True)
  monkeypatch.setattr(client_expect, "_servers", client_expect.ServerMemory())
  yield
  client_connections.Pool().Clear()


class _Wire(object):
  """What libcurl sent and received, in order (its DEBUGFUNCTION), for
  requests made one after the other with one C{curl_config_fn}."""

  def __init__(self, pki):
    self._config = RpcCurlConfig(pki.cluster.path, pki.node.path)
    self._events = []

  def Configure(self, curl):
    self._config(curl)
    curl.setopt(pycurl.VERBOSE, True)
    curl.setopt(pycurl.DEBUGFUNCTION, self._Debug)

  def _Debug(self, kind, data):
    if kind == pycurl.INFOTYPE_HEADER_OUT:
      self._events.append(("head", data.decode("latin-1")))
    elif kind == pycurl.INFOTYPE_HEADER_IN and data.startswith(b"HTTP/"):
      self._events.append(("status", data.decode("latin-1").strip()))
    elif kind == pycurl.INFOTYPE_DATA_OUT:
      self._events.append(("body", data.decode("latin-1")))

  def Take(self):
    """The events since the last call."""
    (events, self._events) = (self._events, [])
    return events


def _AskedToContinue(events):
  """Whether a request's head (each, if libcurl sent it again on a new
  connection) asked for "100 Continue"."""
  asked = {"Expect: 100-continue\r\n" in text
           for (kind, text) in events if kind == "head"}
  assert len(asked) == 1, events
  return asked.pop()


def _Put(port, wire, path, method="PUT", body="{}", timeout=None):
  req = client.HttpClientRequest("127.0.0.1", port, method, path,
                                 headers=list(_RPC_HEADERS), post_data=body,
                                 curl_config_fn=wire.Configure,
                                 read_timeout=timeout)
  client.ProcessRequests([req])
  assert (req.success, req.error, req.resp_status_code) == (True, None, 200)
  return req


class _Handler(http_server.HttpServerHandler):
  def __init__(self):
    http_server.HttpServerHandler.__init__(self)
    self.executions = collections.Counter()

  def HandleRequest(self, req):
    self.executions[req.request_path] += 1
    return req.request_body


def test_asked_only_where_connections_are_kept(serve, pki, backend):
  handler = _Handler()
  server = serve(handler, ssl_params=SslParams(pki.cluster))
  wire = _Wire(pki)
  for i in range(4):
    assert _Put(server.port, wire, "/put/%d" % i, body="[%d]" % i
                ).resp_body == "[%d]" % i
    events = wire.Take()
    expected = backend == "fastcgi" and i > 0
    assert _AskedToContinue(events) == expected, events
    if expected:
      # The body waits for lighttpd's "100 Continue"
      kinds = [kind for (kind, _) in events]
      assert kinds == ["head", "status", "body", "status"], events
      assert events[1][1] == "HTTP/1.1 100 Continue"
  # An empty body (it goes on a new connection) and methods libcurl may
  # send again never wait
  _Put(server.port, wire, "/empty", method="POST", body="")
  assert not _AskedToContinue(wire.Take())
  assert not client_expect.WaitsForContinue("GET", 2, ("127.0.0.1",
                                                       server.port))
  assert set(handler.executions.values()) == {1}


def test_nothing_changes_with_keepalive_off(fastcgi, pki, monkeypatch):
  server = fastcgi(_Handler(), ssl_params=SslParams(pki.cluster))
  wire = _Wire(pki)
  for i in range(2):
    _Put(server.port, wire, "/kept/%d" % i)
    assert _AskedToContinue(wire.Take()) == (i > 0)
  monkeypatch.setattr(client_connections, "_enabled", False)
  for (i, body) in enumerate(["{}", io.BytesIO(b"{}")]):
    _Put(server.port, wire, "/put/%d" % i, body=body)
    assert not _AskedToContinue(wire.Take())


class _ScriptedServer(object):
  """An HTTPS server that keeps connections and answers "100 Continue" as
  lighttpd does, or (C{keeps = False}) answers as Ganeti 3.0's server
  does: never "100 Continue", C{Connection: close} on every response.

  @ivar close_after: a kept connection's response number that says
    C{Connection: close} (lighttpd's C{server.max-keep-alive-requests})
  """

  def __init__(self, pki):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cluster.path)
    self._context = context
    self.keeps = True
    self.close_after = None
    self._open = []
    self._listener = ThreadPerConnection(self._Serve)
    self.port = self._listener.port

  @property
  def connections(self):
    """Connections accepted so far."""
    return self._listener.connections

  def _Serve(self, sock):
    try:
      with self._context.wrap_socket(sock, server_side=True) as conn:
        self._open.append(conn)
        reader = conn.makefile("rb")
        for count in range(1, 100):
          if not reader.readline():
            return
          headers = {}
          for line in iter(reader.readline, b"\r\n"):
            (name, _, value) = line.decode().partition(":")
            headers[name.strip().lower()] = value.strip()
          if self.keeps and headers.get("expect") == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
          reader.read(int(headers.get("content-length", 0)))
          close = not self.keeps or count == self.close_after
          conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n%s\r\nok"
                       % (b"Connection: close\r\n" if close else b""))
          if close:
            return
    except (OSError, ValueError):
      pass

  def Restart(self, keeps):
    """Close every connection, then answer the other way."""
    for conn in self._open:
      try:
        conn.shutdown(socket.SHUT_RDWR)
      except OSError:
        pass
    self.keeps = keeps

  def Close(self):
    self._listener.StopAccepting()
    self.Restart(self.keeps)
    self._listener.Join()


@pytest.fixture
def scripted(pki):
  server = _ScriptedServer(pki)
  yield server
  server.Close()


def test_never_asked_like_ganeti_30(scripted, pki, monkeypatch):
  """A request that asked would wait for the 60 s timeout and fail after
  its own 10 s."""
  monkeypatch.setattr(client_expect, "TIMEOUT_MS", 60000)
  scripted.keeps = False
  wire = _Wire(pki)
  for i in range(4):
    _Put(scripted.port, wire, "/put/%d" % i, timeout=10)
    assert not _AskedToContinue(wire.Take())
  assert scripted.connections == 4


def test_learned_and_forgotten(scripted, pki, monkeypatch):
  monkeypatch.setattr(client_expect, "TIMEOUT_MS", 100)
  wire = _Wire(pki)
  asked = []
  for i in range(3):
    _Put(scripted.port, wire, "/keeping/%d" % i)
    asked.append(_AskedToContinue(wire.Take()))
  # The server ends the kept connection after its fourth response: still a
  # server that keeps connections
  scripted.close_after = 4
  for i in range(2):
    _Put(scripted.port, wire, "/closing/%d" % i)
    asked.append(_AskedToContinue(wire.Take()))
  assert asked == [False, True, True, True, True]
  assert scripted.connections == 2
  # Back to a server like Ganeti 3.0's: asked once more (waiting for
  # TIMEOUT_MS), then no longer
  scripted.Restart(keeps=False)
  for i in range(3):
    _Put(scripted.port, wire, "/stock/%d" % i)
    asked.append(_AskedToContinue(wire.Take()))
  assert asked[5:] == [True, False, False]


#: Ganeti 3.0's own server (Debian's package, its own ganeti.http) with a
#: handler echoing the request's body, in Ganeti's main loop; serves until
#: SIGTERM.  The main loop checks that the cluster's users exist, which a
#: test machine does not have: that check alone is left out.
_GANETI_30_SERVER = r"""
import sys
from ganeti import daemon, http, runtime
from ganeti.http import server
runtime.GetEnts = lambda: None

class Echo(server.HttpServerHandler):
  def HandleRequest(self, req):
    return req.request_body.encode()

(port, pem) = (int(sys.argv[1]), sys.argv[2])
mainloop = daemon.Mainloop()
instance = server.HttpServer(mainloop, "127.0.0.1", port, 20, Echo(),
                             ssl_params=http.HttpSslParams(pem, pem))
instance.Start()
print("serving", flush=True)
mainloop.Run()
instance.Stop()
"""


class _Ganeti30Server(object):
  """Ganeti 3.0's own server in a process of its own, on C{port}."""

  def __init__(self, python_dir, pki, port):
    self.process = subprocess.Popen(
      [sys.executable, "-c", _GANETI_30_SERVER, str(port), pki.cluster.path],
      env=dict(os.environ, PYTHONPATH=python_dir, PYTHONDONTWRITEBYTECODE="1"),
      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
      universal_newlines=True)
    assert self.process.stdout.readline() == "serving\n"

  def Stop(self):
    self.process.terminate()
    assert self.process.wait(30) == 0


@pytest.fixture(scope="module")
def ganeti_30():
  """The directory holding Debian's Ganeti 3.0 package, unmodified."""
  missing = ganeti_package.MissingModules()
  assert not missing, ("Ganeti 3.0's modules need these Python packages"
                       " (the test extra of setup.py): %s" % missing)
  return ganeti_package.Unpack(ganeti_package.FindDeb())


def test_rolled_back_to_ganeti_30s_own_server(ganeti_30, pki, monkeypatch,
                                             tmp_path):
  """A node's noded goes from Ganeti 3.0's server to fastcgi and back.

  Ganeti 3.0's server is never asked, until a fastcgi server on its port
  was seen keeping connections; then one request asks, waits L{client_
  expect.TIMEOUT_MS} for the "100 Continue" that server never sends, sends
  its body and gets the right answer; the next ones no longer ask."""
  port = FreePort()
  wire = _Wire(pki)
  asked = []

  def _PutAll(prefix, count, timeout=None):
    for i in range(count):
      body = '["%s", %d]' % (prefix, i)
      assert _Put(port, wire, "/%s/%d" % (prefix, i), body=body,
                  timeout=timeout).resp_body == body
      asked.append(_AskedToContinue(wire.Take()))

  stock = _Ganeti30Server(ganeti_30, pki, port)
  waited = client_expect.TIMEOUT_MS
  try:
    # a request that asked would wait 60 s and fail after its own 10 s
    monkeypatch.setattr(client_expect, "TIMEOUT_MS", 60000)
    _PutAll("stock", 3, timeout=10)
  finally:
    stock.Stop()
  monkeypatch.setattr(client_expect, "TIMEOUT_MS", waited)

  monkeypatch.setenv("GANETI_HTTP_BACKEND", "fastcgi")
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(tmp_path / "none"))
  fastcgi = http_server.HttpServer("127.0.0.1", port, _Handler(),
                                   daemon_name="test",
                                   ssl_params=SslParams(pki.cluster))
  fastcgi.Start()
  try:
    _PutAll("fastcgi", 2)
  finally:
    fastcgi.Stop()

  stock = _Ganeti30Server(ganeti_30, pki, port)
  try:
    _PutAll("rolled-back", 3)
  finally:
    stock.Stop()
  assert asked == [False, False, False, False, True, True, False, False]
