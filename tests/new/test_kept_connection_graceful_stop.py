"""A request on a kept connection that lighttpd's graceful stop closes
(L{ganeti.http.client_expect}).

Made deterministic: the client keeps a connection to a fastcgi node
daemon (Ganeti 3.0's signature, named C{noded}, so its stop passes the
listening socket on); lighttpd is stopped (SIGSTOP) while it waits in
C{epoll_wait}; a PUT goes out on the kept connection and its first bytes
reach lighttpd's socket unread; the daemon stops (SIGINT to lighttpd, the
listening socket to a keeper) and lighttpd continues: it handles its
graceful stop before reading anything, and closes the connection as one
idle between two requests (C{connection_graceful_shutdown_maint}, lighttpd
1.4.69).  The next daemon takes the listening socket over.

With C{Expect: 100-continue} only the request's head had gone out, so the
client sends the request again on a new connection and the next daemon
runs it, once.  Without it the body had gone out too, and the client must
not send it again (C{NOT_SENT_AGAIN}): the second test shows that the
reproduction reaches the race.
"""

import os
import platform
import signal
import threading
import time

import pycurl
import pytest

from ganeti import http
from ganeti.http import client
from ganeti.http import client_bodies
from ganeti.http import client_connections
from ganeti.http import client_expect
from ganeti.http import server as http_server
from bench.cluster_master import RpcCurlConfig
from tests.new.lighttpd_helpers import Alive, FreePort, WaitFor
from tests.new.test_socket_handover import handover_dir  # pylint: disable=unused-import


class _Handler(http_server.HttpServerHandler):
  """Answers with its daemon's label; appends each request's path to a
  file (requests run in per-connection child processes)."""

  def __init__(self, label, executions):
    http_server.HttpServerHandler.__init__(self)
    self._label = label
    self._executions = executions

  def HandleRequest(self, req):
    with open(self._executions, "a") as executions:
      executions.write(req.request_path + "\n")
    return self._label


@pytest.fixture
def fresh_client(monkeypatch):
  """Connections kept, nothing kept or known from other tests."""
  monkeypatch.setattr(client_connections, "_pool",
                      client_connections.ConnectionPool())
  monkeypatch.setattr(client_connections, "_enabled", True)
  monkeypatch.setattr(client_expect, "_servers", client_expect.ServerMemory())
  # lighttpd is held stopped while the head waits: not what is tested here
  monkeypatch.setattr(client_expect, "TIMEOUT_MS", 60000)
  yield
  client_connections.Pool().Clear()


class _Noded(object):
  """Node daemons one after the other on one port, as a restart makes
  them; each one's requests are appended to one file."""

  def __init__(self, pki, executions):
    self._pki = pki
    self._executions = executions
    self.port = FreePort()
    self.running = None

  def Start(self, label):
    self.running = http_server.HttpServer(
      object(), "127.0.0.1", self.port, 20, _Handler(label, self._executions),
      ssl_params=http.HttpSslParams(self._pki.cluster.path,
                                    self._pki.cluster.path),
      daemon_name="noded")
    self.running.Start()

  def Stop(self):
    (server, self.running) = (self.running, None)
    server.Stop()

  def LighttpdPid(self):
    return self.running._supervisor.pid  # pylint: disable=protected-access


@pytest.fixture
def noded(pki, tmp_path, handover_dir, monkeypatch, fresh_client):
  monkeypatch.setenv("GANETI_HTTP_BACKEND", "fastcgi")
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(tmp_path / "none"))
  monkeypatch.setenv("GANETI_HTTP_HANDOVER_DIR", handover_dir)
  daemons = _Noded(pki, str(tmp_path / "executions"))
  yield daemons
  if daemons.running is not None:
    daemons.Stop()


def _Put(noded, pki, path):
  config = RpcCurlConfig(pki.cluster.path, pki.node.path)

  def _Configure(curl):
    config(curl)
    # The retried request waits in the listening socket's queue while the
    # next daemon starts; its TLS handshake counts as connecting.
    curl.setopt(pycurl.CONNECTTIMEOUT, 60)

  # Ganeti 3.0's RPC client's headers
  return client.HttpClientRequest(
    "127.0.0.1", noded.port, "PUT", path, post_data='{"x": "%s"}' % path,
    headers=["Content-type: application/json", "Expect:"],
    curl_config_fn=_Configure, read_timeout=120)


def _UnreadBytesAt(port):
  """Bytes waiting unread in the server side of established TCP
  connections on local C{port}."""
  total = 0
  with open("/proc/net/tcp") as table:
    for line in table.readlines()[1:]:
      fields = line.split()
      (local, state, queues) = (fields[1], fields[3], fields[4])
      if int(local.split(":")[1], 16) == port and state == "01":
        total += int(queues.split(":")[1], 16)
  return total


def _State(pid):
  with open("/proc/%d/stat" % pid) as stat:
    return stat.read().rsplit(")", 1)[1].split()[0]


#: System call numbers of epoll_wait, epoll_pwait and epoll_pwait2
_EVENT_WAITS = {
  "x86_64": ("232", "281", "441"),
  "aarch64": ("22", "441"),
}


def _StopInEventWait(pid):
  """Stop C{pid} (SIGSTOP) while it waits in C{epoll_wait}, trying again
  until the stop lands there.

  lighttpd's loop (C{server_main_loop}, 1.4.69) handles a graceful stop at
  its top, then runs queued connections, then polls.  Stopped in the poll,
  it returns EINTR at SIGCONT and goes to the top; stopped in between
  (it may still be finishing the previous request), it would poll first
  and read the request before closing the connection.
  """
  waits = _EVENT_WAITS[platform.machine()]
  for _ in range(100):
    os.kill(pid, signal.SIGSTOP)
    WaitFor(lambda: _State(pid) == "T")
    with open("/proc/%d/syscall" % pid) as syscall:
      if syscall.read().split()[0] in waits:
        return
    os.kill(pid, signal.SIGCONT)
    time.sleep(0.01)
  pytest.fail("lighttpd (pid %d) was never stopped in epoll_wait" % pid)


def _SigintPending(pid):
  with open("/proc/%d/status" % pid) as status:
    masks = dict(line.split(":\t", 1) for line in status
                 if line.startswith(("SigPnd", "ShdPnd")))
  return any(int(mask, 16) & (1 << (signal.SIGINT - 1))
             for mask in masks.values())


def _PutDuringGracefulStop(noded, pki):
  """The sequence described above; return the PUT once it has finished."""
  noded.Start("first")
  warm = _Put(noded, pki, "/warm")
  client.ProcessRequests([warm])
  assert (warm.success, warm.resp_status_code) == (True, 200), warm.error
  lighttpd = noded.LighttpdPid()
  put = _Put(noded, pki, "/put")
  sender = threading.Thread(target=client.ProcessRequests, args=([put], ))
  try:
    _StopInEventWait(lighttpd)
    sender.start()
    WaitFor(lambda: _UnreadBytesAt(noded.port) > 0)
    stopper = threading.Thread(target=noded.Stop)
    stopper.start()
    WaitFor(lambda: _SigintPending(lighttpd))
  finally:
    os.kill(lighttpd, signal.SIGCONT)
  stopper.join(60)
  noded.Start("next")
  sender.join(120)
  assert not sender.is_alive()
  WaitFor(lambda: not Alive(lighttpd), timeout=30)
  return put


def _Executions(tmp_path):
  return (tmp_path / "executions").read_text().split()


def test_sent_again_to_the_next_daemon(noded, pki, tmp_path):
  put = _PutDuringGracefulStop(noded, pki)
  assert (put.success, put.error, put.resp_status_code, put.resp_body) == \
    (True, None, 200, "next")
  assert _Executions(tmp_path) == ["/warm", "/put"]


def test_without_expect_the_request_is_lost(noded, pki, tmp_path,
                                            monkeypatch):
  """The reproduction reaches the race: the body had gone out with the
  head, so the client may not send the request again."""
  monkeypatch.setattr(client_expect, "WaitsForContinue", lambda *_: False)
  put = _PutDuringGracefulStop(noded, pki)
  assert (put.success, put.error) == (False, client_bodies.NOT_SENT_AGAIN)
  assert _Executions(tmp_path) == ["/warm"]
