"""Connection reuse in ganeti.http.client (see ganeti/http/client_connections).

Real servers on both backends: the fastcgi backend keeps connections (its
lighttpd does keep-alive), the legacy one closes each after its response
(C{Connection: close}, as Ganeti's own server), so there every request
gets a new connection, as before.  A TCP relay in front of a server counts
the client's connections and can close idle ones, as a server's idle
timeout does.
"""

import collections
import io
import json
import os
import random
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pycurl
import pytest

from ganeti import http
from ganeti.http import client
from ganeti.http import client_bodies
from ganeti.http import client_connections
from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http import server as http_server

from bench.cluster_master import RpcCurlConfig
from tests.thread_per_connection import ThreadPerConnection


class _Relay(object):
  """Relays TCP connections from its own port to a server's.

  @ivar connections: connections accepted so far
  @ivar idle_closes: connections closed by C{idle_close}
  """

  def __init__(self, port, idle_close=None):
    """@param idle_close: returns, for each idle period after the server
      sent something, the seconds after which the relay closes the
      connection; None: never"""
    self._target = ("127.0.0.1", port)
    self._idle_close = idle_close
    self.idle_closes = 0
    self._stopping = False
    self._listener = ThreadPerConnection(self._Relay)
    self.port = self._listener.port

  @property
  def connections(self):
    """Connections accepted so far."""
    return self._listener.connections

  def _Relay(self, downstream):
    upstream = socket.create_connection(self._target)
    deadline = None
    try:
      while not self._stopping:
        timeout = 0.2 if deadline is None else \
          max(0, deadline - time.monotonic())
        (readable, _, _) = select.select([downstream, upstream], [], [],
                                         timeout)
        if not readable:
          if deadline is not None and time.monotonic() >= deadline:
            self.idle_closes += 1
            return
          continue
        for sock in readable:
          data = sock.recv(65536)
          if not data:
            return
          if sock is upstream:
            downstream.sendall(data)
            if self._idle_close is not None:
              deadline = time.monotonic() + self._idle_close()
          else:
            upstream.sendall(data)
            deadline = None
    except OSError:
      pass
    finally:
      downstream.close()
      upstream.close()

  def Close(self):
    """Stop relaying and wait for its threads."""
    self._stopping = True
    self._listener.StopAccepting()
    self._listener.Join()


class _CountingHandler(http_server.HttpServerHandler):
  """Answers C{/run/<id>} with the client certificate digest the server
  checked, and counts how often each id was executed."""

  def __init__(self):
    http_server.HttpServerHandler.__init__(self)
    self.executions = collections.Counter()
    self._seen = threading.local()
    self._lock = threading.Lock()

  def CheckDigest(self, digest, accepted):
    """The server's C{ssl_verify_callback}: remember the digest for the
    request this thread is about to handle."""
    self._seen.digest = digest
    return digest in accepted

  def HandleRequest(self, req):
    with self._lock:
      self.executions[req.request_path] += 1
    body = req.request_body
    return json.dumps({"digest": getattr(self._seen, "digest", None),
                       "body": body.decode() if isinstance(body, bytes)
                       else body})


@pytest.fixture(autouse=True)
def _FreshPool(monkeypatch):
  """Each test starts with an empty pool and reuse on."""
  monkeypatch.setattr(client_connections, "_pool",
                      client_connections.ConnectionPool())
  monkeypatch.setattr(client_connections, "_enabled", True)
  yield
  client_connections.Pool().Clear()


class _Node(object):
  """A node daemon: a server with Ganeti's TLS setup, behind a relay."""

  def __init__(self, serve, pki, backend, idle_close=None):
    self.handler = _CountingHandler()
    accepted = {pki.node.digest, pki.cluster.digest}
    server = serve(self.handler,
                   ssl_params=http.HttpSslParams(pki.cluster.path,
                                                 pki.cluster.path),
                   ssl_verify_peer=True,
                   ssl_verify_callback=lambda digest:
                   self.handler.CheckDigest(digest, accepted))
    self.relay = _Relay(server.port, idle_close)
    self.keeps_connections = backend == "fastcgi"
    self._pki = pki

  def Request(self, path, cert=None, method="POST", body="x"):
    """A request through the relay, with C{cert} (default: the node's)."""
    cert_path = (cert or self._pki.node).path
    return client.HttpClientRequest(
      "127.0.0.1", self.relay.port, method, path, post_data=body,
      curl_config_fn=RpcCurlConfig(self._pki.cluster.path, cert_path))


@pytest.fixture
def node(serve, pki, backend):
  node = _Node(serve, pki, backend)
  yield node
  node.relay.Close()


def _Run(requests):
  client.ProcessRequests(requests)
  for req in requests:
    assert (req.success, req.error, req.resp_status_code) == \
      (True, None, 200), req
  return [json.loads(req.resp_body) for req in requests]


class TestReuse:
  def testSequentialCallsShareOneConnection(self, node):
    for i in range(20):
      assert _Run([node.Request("/run/%d" % i)])[0]["body"] == "x"
    assert node.relay.connections == (1 if node.keeps_connections else 20)
    assert client_connections.Pool().IdleCount() == 1

  def testOffMeansNewConnections(self, node, monkeypatch):
    monkeypatch.setattr(client_connections, "_enabled", False)
    for i in range(5):
      _Run([node.Request("/run/%d" % i)])
    assert node.relay.connections == 5
    assert client_connections.Pool().IdleCount() == 0

  def testFanOut(self, node):
    for i in range(5):
      _Run([node.Request("/run/%d/%d" % (i, j)) for j in range(4)])
    assert node.relay.connections == (4 if node.keeps_connections else 20)


class TestTlsIdentity:
  def testTwoClientCertificates(self, node, pki):
    certs = [pki.node, pki.cluster] * 6
    for i, cert in enumerate(certs):
      answer = _Run([node.Request("/run/%d" % i, cert=cert)])[0]
      assert answer["digest"] == cert.digest, i
    # Two identities in one call share nothing either
    answers = _Run([node.Request("/mixed/%d" % i, cert=cert)
                    for i, cert in enumerate(certs)])
    assert [a["digest"] for a in answers] == [c.digest for c in certs]
    if node.keeps_connections:
      assert node.relay.connections == 2 + len(certs)

  def testCertificateRenewedAtTheSamePath(self, node, pki, tmp_path):
    path = str(tmp_path / "client.pem")
    for (i, cert) in enumerate([pki.node, pki.cluster, pki.node]):
      shutil.copyfile(cert.path, path)
      req = node.Request("/run/%d" % i)
      req.curl_config_fn = RpcCurlConfig(pki.cluster.path, path)
      assert _Run([req])[0]["digest"] == cert.digest, i

  def testIdentityFollowsFileContents(self, tmp_path, pki):
    path = str(tmp_path / "client.pem")
    shutil.copyfile(pki.node.path, path)
    options = {pycurl.SSLCERT: path, pycurl.SSL_VERIFYPEER: True}
    first = client_connections.TlsIdentity(options)
    assert client_connections.TlsIdentity(dict(options)) == first
    shutil.copyfile(pki.cluster.path, path)
    assert client_connections.TlsIdentity(options) != first
    options[pycurl.SSL_VERIFYPEER] = False
    assert client_connections.TlsIdentity(options) != first
    assert client_connections.TlsIdentity({pycurl.HTTPHEADER: []}) \
      is None


class TestThreads:
  def testSixteenThreads(self, node):
    errors = []
    done = collections.Counter()
    stop = time.monotonic() + 4

    def _Work(thread):
      rng = random.Random(thread)
      count = 0
      try:
        while time.monotonic() < stop:
          requests = [node.Request("/run/%d/%d/%d" % (thread, count, j),
                                   body="%d-%d-%d" % (thread, count, j))
                      for j in range(rng.randint(1, 3))]
          for (req, answer) in zip(requests, _Run(requests)):
            # A connection carrying two transfers at once would mix them
            assert answer["body"] == req.post_data
          count += 1
      except Exception as err:  # pylint: disable=broad-except
        errors.append(err)
      done[thread] = count

    threads = [threading.Thread(target=_Work, args=(i, )) for i in range(16)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join(60)
    assert errors == []
    assert len(done) == 16 and min(done.values()) > 0
    # Every request ran exactly once
    assert set(node.handler.executions.values()) == {1}
    assert client_connections.Pool().IdleCount() <= \
      client_connections.MAX_IDLE_MULTIS

  def testLeasesAreExclusive(self):
    pool = client_connections.Pool()
    leased = set()
    lock = threading.Lock()
    errors = []

    def _Work():
      for _ in range(200):
        lease = pool.Checkout((), pycurl.CurlMulti)
        with lock:
          if id(lease.multi) in leased:
            errors.append("multi handle leased twice")
          leased.add(id(lease.multi))
        time.sleep(0)
        with lock:
          leased.discard(id(lease.multi))
        pool.Checkin(lease)

    threads = [threading.Thread(target=_Work) for _ in range(16)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join(30)
    assert errors == []
    assert pool.IdleCount() <= client_connections.MAX_IDLE_MULTIS


class _Clock(object):
  def __init__(self):
    self.now = 1000.0

  def __call__(self):
    return self.now


class TestPoolBounds:
  def testIdleMultisCappedAndAged(self):
    clock = _Clock()
    pool = client_connections.ConnectionPool(clock=clock)
    leases = [pool.Checkout(("id", i % 2), pycurl.CurlMulti)
              for i in range(client_connections.MAX_IDLE_MULTIS + 3)]
    for lease in leases:
      pool.Checkin(lease)
    assert pool.IdleCount() == client_connections.MAX_IDLE_MULTIS
    # The most recently used multi handle of an identity comes back
    assert pool.Checkout(("id", 0), NotImplemented).multi is leases[-1].multi
    clock.now += client_connections.MAX_IDLE_AGE + 1
    assert pool.Checkout(("id", 1), pycurl.CurlMulti).multi not in \
      [lease.multi for lease in leases]
    assert pool.IdleCount() == 0

  def testClientAgeBelowServerIdle(self):
    # The client must give up a connection well before lighttpd does
    assert client_connections.MAX_IDLE_AGE + 5 <= \
      lighttpd_config.DEFAULT_KEEP_ALIVE_IDLE


class TestSwitch:
  @pytest.mark.parametrize("environ, ini, expected", [
    ({}, None, True),
    ({"GANETI_HTTP_CLIENT_KEEPALIVE": "0"}, None, False),
    ({"GANETI_HTTP_CLIENT_KEEPALIVE": " Off "}, None, False),
    ({"GANETI_HTTP_CLIENT_KEEPALIVE": "yes"}, "[client]\nkeepalive = no\n",
     True),
    ({"GANETI_HTTP_CLIENT_KEEPALIVE": ""}, "[client]\nkeepalive = no\n",
     False),
    ({}, "[client]\nkeepalive = 1\n", True),
  ])
  def testValues(self, tmp_path, environ, ini, expected):
    path = tmp_path / "http-backend.conf"
    if ini is not None:
      path.write_text(ini)
    environ = dict(environ, GANETI_HTTP_BACKEND_CONFIG=str(path))
    assert client_connections._ReadSwitch(environ) is expected

  def testBadValue(self, tmp_path):
    with pytest.raises(ValueError, match="'maybe'.*GANETI_HTTP_CLIENT"):
      client_connections._ReadSwitch({
        "GANETI_HTTP_CLIENT_KEEPALIVE": "maybe",
        "GANETI_HTTP_BACKEND_CONFIG": str(tmp_path / "none")})


_FORK_SCRIPT = r"""
import json, os, sys
sys.path.insert(0, sys.argv[1])
from ganeti.http import client
from bench.cluster_master import RpcCurlConfig

port, ca, cert = int(sys.argv[2]), sys.argv[3], sys.argv[4]

def Call(path):
  req = client.HttpClientRequest("127.0.0.1", port, "POST", path,
                                 post_data="x",
                                 curl_config_fn=RpcCurlConfig(ca, cert))
  client.ProcessRequests([req])
  return [req.success, req.error, req.resp_status_code]

results = [Call("/run/parent-1")]
pid = os.fork()
if pid == 0:
  # Exits normally: the interpreter's clean-up runs (libcurl closing
  # whatever connections the child holds)
  ok = Call("/run/child")[0]
  sys.exit(0 if ok else 1)
(_, status) = os.waitpid(pid, 0)
results.append(status)
results.append(Call("/run/parent-2"))
print(json.dumps(results))
"""


class TestFork:
  def testChildUsesItsOwnConnections(self, node, pki):
    top = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
    out = subprocess.run(
      [sys.executable, "-c", _FORK_SCRIPT, top, str(node.relay.port),
       pki.cluster.path, pki.node.path],
      check=True, capture_output=True, text=True, timeout=60,
      env=dict(os.environ, GANETI_HTTP_CLIENT_KEEPALIVE="1")).stdout
    (first, child_status, second) = json.loads(out)
    assert first == second == [True, None, 200]
    assert child_status == 0
    assert node.handler.executions == {"/run/parent-1": 1, "/run/child": 1,
                                       "/run/parent-2": 1}
    # The child made its own connection; the parent's survived the child's
    # exit and carried its second request
    assert node.relay.connections == (2 if node.keeps_connections else 3)


class _ExecuteThenHangUp(object):
  """A keep-alive HTTPS server that, from the second request on a
  connection, executes the request and then closes the connection without
  answering, as a server that crashed in the middle would."""

  def __init__(self, pki):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cluster.path)
    self._context = context
    self.executions = collections.Counter()
    self._listener = ThreadPerConnection(self._Serve)
    self.port = self._listener.port

  def _Serve(self, sock):
    try:
      with self._context.wrap_socket(sock, server_side=True) as conn:
        reader = conn.makefile("rb")
        for count in range(1, 100):
          request_line = reader.readline().decode()
          if not request_line:
            return
          length = 0
          for line in iter(reader.readline, b"\r\n"):
            (name, _, value) = line.decode().partition(":")
            if name.lower() == "content-length":
              length = int(value)
          reader.read(length)
          self.executions[request_line.split()[1]] += 1
          if count >= 2:
            return
          conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    except (OSError, ValueError):
      pass

  def Close(self):
    self._listener.StopAccepting()
    self._listener.Join()


@pytest.fixture
def hang_up_server(pki):
  server = _ExecuteThenHangUp(pki)
  yield server
  server.Close()


def _HangUpRequest(server, pki, method, path, body="x"):
  def _Configure(curl):
    curl.setopt(pycurl.CAINFO, pki.cluster.path)
    curl.setopt(pycurl.SSL_VERIFYHOST, 0)
  return client.HttpClientRequest("127.0.0.1", server.port, method, path,
                                  post_data=body, curl_config_fn=_Configure)


class TestNoSecondExecution:
  @pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
  @pytest.mark.parametrize("body_type", [str, bytes, io.BytesIO])
  def testNotResentAfterHangUp(self, hang_up_server, pki, method, body_type):
    first = _HangUpRequest(hang_up_server, pki, method, "/first")
    client.ProcessRequests([first])
    assert first.success
    body = "x" * 100 if body_type is str else body_type(b"x" * 100)
    second = _HangUpRequest(hang_up_server, pki, method, "/second", body)
    client.ProcessRequests([second])
    assert second.success is False
    assert second.error == client_bodies.NOT_SENT_AGAIN
    assert hang_up_server.executions == {"/first": 1, "/second": 1}

  def testWithoutBodyOnANewConnection(self, hang_up_server, pki):
    """A POST without a body has nothing libcurl would have to rewind, so
    it is not sent on a kept connection at all."""
    for path in ["/first", "/second", "/third"]:
      req = _HangUpRequest(hang_up_server, pki, "POST", path, body="")
      client.ProcessRequests([req])
      assert (req.success, req.resp_body) == (True, "ok")
    assert set(hang_up_server.executions.values()) == {1}

  def testLibcurlWouldResend(self, hang_up_server, pki, monkeypatch):
    """Without the guard libcurl sends the request again: the reason for
    it, and the proof that the test above can fail."""
    monkeypatch.setattr(client_connections, "_RESENDABLE_METHODS",
                        frozenset(["GET", "HEAD", "POST"]))
    for path in ["/first", "/second"]:
      client.ProcessRequests([_HangUpRequest(hang_up_server, pki, "POST",
                                             path)])
    assert hang_up_server.executions["/second"] == 2

  def testGetIsResent(self, hang_up_server, pki):
    for path in ["/first", "/second"]:
      req = _HangUpRequest(hang_up_server, pki, "GET", path, body="")
      client.ProcessRequests([req])
      assert (req.success, req.resp_body) == (True, "ok")

  def testServerClosingIdleConnections(self, serve, pki, backend):
    """The relay closes connections after 0-15 ms without traffic while the
    client sends POSTs 0-15 ms apart.  Some requests fail (the connection
    closed under them, before or after the server executed them); none
    runs twice, and each that succeeded ran once."""
    rng = random.Random(12)
    node = _Node(serve, pki, backend, idle_close=lambda: rng.uniform(0, 0.015))
    try:
      requests = []
      for i in range(150):
        time.sleep(rng.uniform(0, 0.015))
        req = node.Request("/run/%d" % i)
        client.ProcessRequests([req])
        requests.append(req)
    finally:
      node.relay.Close()
    executions = node.handler.executions
    assert max(executions.values()) == 1
    succeeded = [i for (i, req) in enumerate(requests) if req.success]
    assert all(executions["/run/%d" % i] == 1 for i in succeeded)
    assert len(succeeded) > len(requests) / 3
    assert node.relay.idle_closes > 0
    if node.keeps_connections:
      assert node.relay.connections < len(requests)
