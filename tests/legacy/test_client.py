"""Tests for ganeti.http.client: the pycurl client Ganeti's RPC runs on.

The first part drives the client's internals with fakes; the second sends
real requests with pycurl to a real HTTPS server using generated
certificates, the way Ganeti's master talks to its node daemons.
"""

import collections
import math
import re
import socket
import sys
import threading
import time
import types

import pycurl
import pytest

from ganeti import http
from ganeti.http import client
from ganeti.http import client_monitor
from ganeti.http import server as http_server


def _Request(path="/version", **kwargs):
  return client.HttpClientRequest("localhost", 1811, "GET", path, **kwargs)


class TestHttpClientRequest:
  def testDefaults(self):
    req = _Request()
    assert (req.host, req.port, req.method, req.path) == \
      ("localhost", 1811, "GET", "/version")
    assert req.headers == []
    assert req.post_data == ""
    for name in ["read_timeout", "curl_config_fn", "nicename",
                 "completion_cb", "success", "error", "resp_status_code",
                 "resp_body"]:
      assert getattr(req, name) is None, name

  def testHeaders(self):
    headers = ["Accept: text/html", "Content-type: text/plain; charset=ascii"]
    assert _Request(headers=headers).headers == headers
    converted = _Request(headers={"Content-type": "text/plain",
                                  "Accept": "text/html"}).headers
    assert sorted(converted) == ["Accept: text/html",
                                 "Content-type: text/plain"]

  def testPostData(self):
    assert _Request(post_data="Hello").post_data == "Hello"
    assert _Request(post_data=b"\x00\xff").post_data == b"\x00\xff"

  @pytest.mark.parametrize("host, url", [
    ("localhost", "https://localhost:1811/version"),
    ("node1.example.com", "https://node1.example.com:1811/version"),
    ("192.0.2.9", "https://192.0.2.9:1811/version"),
    ("2001:db8::cafe", "https://[2001:db8::cafe]:1811/version"),
    ("::1", "https://[::1]:1811/version"),
    ("::ffff:192.0.2.1", "https://[::ffff:192.0.2.1]:1811/version"),
    ])
  def testUrl(self, host, url):
    assert client.HttpClientRequest(host, 1811, "GET", "/version").url == url

  def testRepr(self):
    req = client.HttpClientRequest("192.0.2.9", 1811, "POST", "/x",
                                   post_data="y")
    assert re.fullmatch(r"<ganeti\.http\.client\.HttpClientRequest"
                        r" 192\.0\.2\.9:1811 POST /x at 0x[0-9a-f]+>",
                        repr(req))
    assert repr(req).endswith("at %#x>" % id(req))

  @pytest.mark.parametrize("kwargs", [
    {"path": "version"}, {"path": ""},
    {"curl_config_fn": 1}, {"curl_config_fn": {}},
    {"completion_cb": NotImplemented}, {"completion_cb": "fn"},
    ])
  def testAssertions(self, kwargs):
    with pytest.raises(AssertionError):
      _Request(**kwargs)

  def testCallables(self):
    req = _Request(curl_config_fn=len, completion_cb=NotImplementedError)
    assert req.curl_config_fn is len
    assert req.completion_cb is NotImplementedError


class _FakeCurl(object):
  """Records options; answers getinfo from C{info}."""

  def __init__(self):
    self.opts = {}
    self.info = {}

  def setopt(self, option, value):
    self.opts[option] = value

  def getinfo(self, what):
    return self.info[what]


def _ExpectedOptions(req):
  opts = {
    pycurl.VERBOSE: False,
    pycurl.NOSIGNAL: True,
    pycurl.USERAGENT: http.HTTP_GANETI_VERSION,
    pycurl.PROXY: "",
    pycurl.CUSTOMREQUEST: req.method,
    pycurl.URL: req.url,
    pycurl.POSTFIELDS: req.post_data,
    pycurl.HTTPHEADER: req.headers,
    }
  if req.read_timeout is None:
    opts[pycurl.TIMEOUT] = 0
  elif req.read_timeout == int(req.read_timeout):
    opts[pycurl.TIMEOUT] = int(req.read_timeout)
  else:  # whole seconds would round 0.5 down to 0, which is no limit
    opts[pycurl.TIMEOUT_MS] = math.ceil(req.read_timeout * 1000)
  if hasattr(pycurl, "SSL_SESSIONID_CACHE"):
    opts[pycurl.SSL_SESSIONID_CACHE] = False
  return opts


class TestStartRequest:
  @pytest.mark.parametrize("read_timeout", [None, 0, 1, 0.5, 2.9, 36000])
  def testOptions(self, read_timeout):
    req = client.HttpClientRequest("192.0.2.1", 1811, "PUT", "/x",
                                   headers=["A: b"], post_data="data",
                                   read_timeout=read_timeout)
    curl = _FakeCurl()
    pending = client._StartRequest(curl, req)
    assert pending.GetCurlHandle() is curl
    assert pending.GetCurrentRequest() is req
    assert callable(curl.opts.pop(pycurl.WRITEFUNCTION))
    assert curl.opts == _ExpectedOptions(req)

  def testConfigFunctionRunsLast(self):
    seen = []

    def _Configure(curl):
      seen.append(dict(curl.opts))
      curl.setopt(pycurl.CAINFO, "ca.pem")
      curl.setopt(pycurl.TIMEOUT, 99)

    curl = _FakeCurl()
    client._StartRequest(curl, _Request(curl_config_fn=_Configure))
    assert len(seen) == 1 and pycurl.WRITEFUNCTION in seen[0]
    assert curl.opts[pycurl.CAINFO] == "ca.pem"
    assert curl.opts[pycurl.TIMEOUT] == 99

  @pytest.mark.parametrize("errmsg, status, chunks", [
    (None, 200, [b"Hello ", b"W\xc3\xb6rld"]),
    (None, 404, []),
    ("Error 28: Operation timed out", 0, [b"partial"]),
    # Not UTF-8 (a Latin-1 error page): U+FFFD, not an exception that
    # would lose every request of the ProcessRequests call
    (None, 500, [b"caf\xe9"]),
    ])
  def testDone(self, errmsg, status, chunks):
    completed = []
    req = _Request(completion_cb=completed.append, post_data="big")
    curl = _FakeCurl()
    pending = client._StartRequest(curl, req)
    for chunk in chunks:
      curl.opts[pycurl.WRITEFUNCTION](chunk)
    curl.info = {pycurl.RESPONSE_CODE: status, pycurl.LOCAL_IP: "127.0.0.1",
                 pycurl.LOCAL_PORT: 40000}
    pending.Done(errmsg)

    assert req.success is (errmsg is None)
    assert req.error == errmsg
    assert req.resp_status_code == status
    assert req.resp_body == b"".join(chunks).decode("utf-8", "replace")
    assert isinstance(req.resp_body, str)
    assert completed == [req]
    # The handle no longer holds the request body or the response buffer
    assert curl.opts[pycurl.POSTFIELDS] == ""
    assert curl.opts[pycurl.WRITEFUNCTION](b"more") is None

    with pytest.raises(AssertionError):
      pending.Done(None)
    assert completed == [req]


class _ScriptedMulti(object):
  """A CurlMulti whose perform/info_read results come from a script."""

  def __init__(self, script):
    self.script = list(script)
    self.handles = []
    self.calls = []

  def add_handle(self, curl):
    self.handles.append(curl)

  def remove_handle(self, curl):
    self.handles.remove(curl)

  def perform(self):
    self.calls.append("perform")
    return self.script.pop(0)

  def info_read(self):
    self.calls.append("info_read")
    return self.script.pop(0)

  def select(self, timeout):
    self.calls.append("select %s" % timeout)


class TestProcessCurlRequests:
  def test(self):
    first, second, third = object(), object(), object()
    multi = _ScriptedMulti([
      (pycurl.E_CALL_MULTI_PERFORM, 3),
      (pycurl.E_MULTI_OK, 3),
      (0, [], []),
      (pycurl.E_MULTI_OK, 1),
      (1, [first], []),
      (0, [], [(second, 7, "Connection refused")]),
      (pycurl.E_MULTI_OK, 0),
      (0, [third], []),
      ])
    results = []
    for curl, errmsg in client._ProcessCurlRequests(multi,
                                                    [first, second, third]):
      assert curl not in multi.handles
      results.append((curl, errmsg))
    assert results == [(first, None), (second, "Error 7: Connection refused"),
                       (third, None)]
    assert multi.calls == ["perform", "perform", "info_read", "select 1.0",
                           "perform", "info_read", "info_read", "select 1.0",
                           "perform", "info_read"]
    assert not multi.script and not multi.handles


class _RecordingMulti(object):
  def __init__(self):
    self.opts = {}

  def setopt(self, option, value):
    self.opts[option] = value


class TestConnectionCap:
  """libcurl's cap on open connections follows the Ganeti release."""

  @pytest.mark.parametrize("constants, expected", [
    (None, 30),  # no Ganeti: 3.2's value
    ({}, None),  # Ganeti 3.0 and 3.1: no constant, no cap
    ({"RPC_MAX_CONCURRENT_CONNECTIONS": 12}, 12),  # 3.2
  ], ids=["without-ganeti", "ganeti-3.0", "ganeti-3.2"])
  def testCapFromConstants(self, monkeypatch, constants, expected):
    module = None
    if constants is not None:
      module = types.ModuleType("ganeti.constants")
      module.__dict__.update(constants)
    monkeypatch.setitem(sys.modules, "ganeti.constants", module)
    assert client._MaxTotalConnections() == expected


class TestProcessRequests:
  def testEmpty(self):
    multis = []

    def _Multi():
      multis.append(_RecordingMulti())
      return multis[-1]

    client.ProcessRequests([], _curl=NotImplemented, _curl_multi=_Multi,
                           _curl_process=lambda multi, handles: iter([]))
    assert multis[0].opts == {pycurl.M_MAX_TOTAL_CONNECTIONS: 30}

  def testFinishesUnderExclusiveLock(self):
    checks = []
    monitors = []

    def _Check(req):
      checks.append(monitors[0]._lock.is_owned(shared=0))

    def _Process(multi, handles):
      for curl in handles:
        curl.info = {pycurl.RESPONSE_CODE: 200, pycurl.LOCAL_IP: "",
                     pycurl.LOCAL_PORT: 0}
        yield (curl, None)

    requests = [_Request(completion_cb=_Check) for _ in range(3)]
    client.ProcessRequests(requests, lock_monitor_cb=monitors.append,
                           _curl=_FakeCurl, _curl_multi=object,
                           _curl_process=_Process)
    assert checks == [True, True, True]
    assert not monitors[0]._lock.is_owned()
    assert monitors[0].GetLockInfo(None) == []
    assert [req.resp_status_code for req in requests] == [200, 200, 200]

  @pytest.mark.parametrize("attribute, value", [
    ("success", False), ("error", "x"), ("resp_status_code", 200),
    ("resp_body", ""),
    ])
  def testUsedRequest(self, attribute, value):
    req = _Request()
    setattr(req, attribute, value)
    with pytest.raises(AssertionError):
      client.ProcessRequests([req], _curl=NotImplemented,
                             _curl_multi=NotImplemented,
                             _curl_process=NotImplemented)


class _Pending(object):
  def __init__(self, req):
    self.req = req

  def GetCurrentRequest(self):
    return self.req


class TestPendingRequestMonitor:
  def test(self):
    pending = [_Pending(_Request("/a")), _Pending(_Request("/b", nicename="b"))]
    owner = threading.Thread(name="job-42")
    monitor = client_monitor.PendingRequestMonitor(owner, lambda: pending)
    assert sorted(monitor.GetLockInfo(set())) == [
      ("rpc/b", None, ["job-42"], None),
      ("rpc/localhost/a", None, ["job-42"], None),
      ]
    monitor.acquire(shared=0)
    assert monitor._lock.is_owned(shared=0)
    monitor.release()
    monitor.Disable()
    assert monitor.GetLockInfo(set()) == []

  def testNoOp(self):
    monitor = client_monitor.NoOpRequestMonitor
    monitor.acquire(shared=0)
    monitor.release()
    monitor.Disable()


class TestSharedLock:
  @staticmethod
  def _InThread(fn):
    """Call C{fn} in another thread; return its result or raise its error."""
    outcome = []

    def _Call():
      try:
        outcome.append((True, fn()))
      except Exception as err:  # pylint: disable=broad-except
        outcome.append((False, err))
    thread = threading.Thread(target=_Call)
    thread.start()
    thread.join(5)
    (ok, value), = outcome
    if not ok:
      raise value
    return value

  @staticmethod
  def _TryAcquire(lock, shared, wait=0.2):
    """Acquire and release in another thread.

    @return: whether that thread got the lock within C{wait} seconds, and
      the thread
    """
    acquired = threading.Event()

    def _Acquire():
      lock.acquire(shared=shared)
      acquired.set()
      lock.release()
    thread = threading.Thread(target=_Acquire, daemon=True)
    thread.start()
    return acquired.wait(wait), thread

  def testOwnership(self):
    lock = client_monitor.SharedLock()
    assert not lock.is_owned()
    lock.acquire(shared=1)
    assert lock.is_owned() and lock.is_owned(shared=1)
    assert not lock.is_owned(shared=0)
    assert not self._InThread(lock.is_owned)
    lock.release()
    lock.acquire()
    assert lock.is_owned(shared=0) and not lock.is_owned(shared=1)
    lock.release()
    assert not lock.is_owned()

  def testMisuse(self):
    lock = client_monitor.SharedLock()
    with pytest.raises(AssertionError):
      lock.release()
    lock.acquire(shared=1)
    with pytest.raises(AssertionError):
      lock.acquire(shared=1)
    with pytest.raises(AssertionError):
      self._InThread(lock.release)
    lock.release()

  def testSharersExcludeWriter(self):
    lock = client_monitor.SharedLock()
    lock.acquire(shared=1)
    acquired, _ = self._TryAcquire(lock, shared=1, wait=5)
    assert acquired
    acquired, writer = self._TryAcquire(lock, shared=0)
    assert not acquired
    # A waiting writer keeps new sharers out
    acquired, sharer = self._TryAcquire(lock, shared=1)
    assert not acquired
    lock.release()
    writer.join(5)
    sharer.join(5)
    assert not writer.is_alive() and not sharer.is_alive()

  def testWriterExcludesAll(self):
    lock = client_monitor.SharedLock()
    lock.acquire(shared=0)
    acquired, sharer = self._TryAcquire(lock, shared=1)
    assert not acquired
    lock.release()
    sharer.join(5)
    assert not sharer.is_alive()


# Real transfers over TLS


class _Handler(http_server.HttpServerHandler):
  """Echoes each request; some paths are slow or fail."""

  def HandleRequest(self, req):
    path = req.request_path
    if path.startswith("/sleep/"):
      time.sleep(float(path[len("/sleep/"):]))
    elif path == "/missing":
      raise http.HttpNotFound()
    body = req.request_body
    if isinstance(body, bytes):
      body = body.decode("utf-8")
    return "%s %s %s" % (req.request_method, path, body)


def _CurlConfig(ca, client_cert=None):
  """A C{curl_config_fn} set up as Ganeti's RPC client sets it."""
  def _Configure(curl):
    curl.setopt(pycurl.CAINFO, ca.path)
    curl.setopt(pycurl.SSL_VERIFYPEER, True)
    curl.setopt(pycurl.SSL_VERIFYHOST, 0)
    if client_cert is not None:
      curl.setopt(pycurl.SSLCERTTYPE, "PEM")
      curl.setopt(pycurl.SSLCERT, client_cert.path)
      curl.setopt(pycurl.SSLKEYTYPE, "PEM")
      curl.setopt(pycurl.SSLKEY, client_cert.path)
  return _Configure


@pytest.fixture
def https_server(serve, pki):
  """A node-daemon-like server: cluster certificate, client certificates
  required and checked by digest against the node certificate."""
  accepted = {pki.node.digest, pki.cluster.digest}
  return serve(_Handler(), ssl_params=http.HttpSslParams(pki.cluster.path,
                                                        pki.cluster.path),
               ssl_verify_peer=True, ssl_verify_callback=accepted.__contains__)


@pytest.fixture
def node_request(https_server, pki):
  """Build requests to C{https_server} with the node's client certificate."""
  def _Build(method, path, **kwargs):
    kwargs.setdefault("curl_config_fn", _CurlConfig(pki.cluster, pki.node))
    return client.HttpClientRequest("127.0.0.1", https_server.port, method,
                                    path, **kwargs)
  return _Build


def _FreePort():
  """A local port nothing listens on (it was free a moment ago)."""
  with socket.socket() as sock:
    sock.bind(("127.0.0.1", 0))
    return sock.getsockname()[1]


class TestRealTransfers:
  def testManyConcurrent(self, node_request):
    completed = collections.Counter()

    def _Completed(req):
      completed[id(req)] += 1
      assert req.success is not None

    requests = [node_request("POST", "/echo/%d" % i, post_data="body %d" % i,
                             completion_cb=_Completed)
                for i in range(200)]
    requests.append(node_request("GET", "/missing", completion_cb=_Completed))
    client.ProcessRequests(requests)

    for i, req in enumerate(requests[:-1]):
      assert (req.success, req.error, req.resp_status_code) == \
        (True, None, 200), req
      assert req.resp_body == "POST /echo/%d body %d" % (i, i)
    # An HTTP error status is still a successful transfer
    missing = requests[-1]
    assert (missing.success, missing.resp_status_code) == (True, 404)
    assert completed == {id(req): 1 for req in requests}

  def testReadTimeout(self, node_request):
    slow = node_request("GET", "/sleep/1.4", read_timeout=1)
    fast = node_request("GET", "/fast", read_timeout=1)
    start = time.monotonic()
    client.ProcessRequests([slow, fast])
    assert time.monotonic() - start < 1.4
    assert slow.success is False
    assert slow.error.startswith("Error %d:" % pycurl.E_OPERATION_TIMEDOUT)
    assert (fast.success, fast.resp_body) == (True, "GET /fast ")

  def testConnectionRefused(self):
    completed = []
    req = client.HttpClientRequest("127.0.0.1", _FreePort(), "GET", "/",
                                   completion_cb=completed.append)
    client.ProcessRequests([req])
    assert req.success is False
    assert req.error.startswith("Error %d:" % pycurl.E_COULDNT_CONNECT)
    assert (req.resp_status_code, req.resp_body) == (0, "")
    assert completed == [req]

  def testLockMonitor(self, node_request):
    requests = [node_request("GET", "/sleep/0.4", nicename="node%d" % i)
                for i in range(3)]
    requests.append(node_request("GET", "/sleep/0.2"))
    expected = {"rpc/node0", "rpc/node1", "rpc/node2",
                "rpc/127.0.0.1/sleep/0.2"}
    snapshots = []
    monitors = []
    done = threading.Event()

    def _Watch():
      while not done.is_set():
        snapshots.append(monitors[0].GetLockInfo(None))
        time.sleep(0.02)

    watcher = threading.Thread(target=_Watch)

    def _Register(monitor):
      monitors.append(monitor)
      snapshots.append(monitor.GetLockInfo(None))
      watcher.start()

    try:
      client.ProcessRequests(requests, lock_monitor_cb=_Register)
    finally:
      done.set()
      watcher.join(5)

    assert all(req.success for req in requests)
    owner = threading.current_thread().name
    assert sorted(snapshots[0]) == sorted((name, None, [owner], None)
                                          for name in expected)
    # Requests leave the list one by one as they finish
    names = [{entry[0] for entry in snapshot} for snapshot in snapshots]
    assert all(later <= earlier for earlier, later in zip(names, names[1:]))
    assert any(0 < len(current) < len(expected) for current in names)
    assert monitors[0].GetLockInfo(None) == []

  def testCertificates(self, node_request, pki):
    # (trusted CA, client certificate, whether the transfer works)
    cases = [
      ("cluster", "node", True),
      ("cluster", "cluster", True),
      ("cluster", None, False),
      ("cluster", "foreign", False),
      ("foreign", "node", False),
      ]
    requests = []
    for ca, client_cert, _ in cases:
      config = _CurlConfig(getattr(pki, ca),
                           client_cert and getattr(pki, client_cert))
      requests.append(node_request("GET", "/version", curl_config_fn=config))
    client.ProcessRequests(requests)

    for case, req in zip(cases, requests):
      if case[2]:
        assert (req.success, req.resp_status_code, req.resp_body) == \
          (True, 200, "GET /version "), case
      else:
        assert req.success is False and req.error, (case, req.resp_body)
