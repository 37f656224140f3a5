"""A lighttpd released at a daemon's stop is served until it exits
(L{ganeti.http.backends.fastcgi.drainer}), issue 11 section 3.

Daemons here are real processes started as Ganeti 3.0 starts them
(L{tests.new.daemonized}: 3.0's signature, so the stop releases lighttpd
and returns at once), with a runtime directory of the test's own, so that
what is left behind can be seen.  A restart is what C{daemon-util
restart} does: SIGTERM, wait for the daemon to exit, start a new one.
"""

import contextlib
import json
import os
import re
import signal
import socket
import threading

import pytest

from ganeti.http.backends.fastcgi.lighttpd import layout as lighttpd_layout
from tests.legacy.test_restart import _Get, _StartDaemon
from tests.new.lighttpd_helpers import (REPO, Alive, ProcessesMentioning,
                                        ProcessesUsing, WaitFor)
from tests.new.test_fastcgi_connection import Exchange, Params, RequestBytes
from tests.new.test_fastcgi_server import readable_dir  # pylint: disable=unused-import
from tests.raw_http import ReadUntilClosed


def _Environment(tmp_path, runtime_dir, processes):
  """The daemons' environment: fastcgi, C{processes} backend processes,
  state directories in C{runtime_dir}."""
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nruntime-dir = %s\nprocesses = %d\n" %
                    (runtime_dir, processes))
  return dict(os.environ, GANETI_HTTP_BACKEND="fastcgi",
              GANETI_HTTP_BACKEND_CONFIG=str(config),
              PYTHONPATH=REPO)


def _Children(pid):
  """The pids of the live children of process C{pid} (lighttpd, its
  lifeline, workers of a daemon)."""
  children = []
  for entry in os.listdir("/proc"):
    try:
      with open("/proc/%s/stat" % entry) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
      continue
    if int(fields[1]) == pid and Alive(int(entry)):
      children.append(int(entry))
  return children


def _Lighttpd(runtime_dir):
  """The pid of the one lighttpd running on a configuration in
  C{runtime_dir}."""
  (pid, ) = ProcessesMentioning(runtime_dir)
  return pid


def _Sockets(pid):
  """How many sockets process C{pid} holds."""
  fd_dir = "/proc/%d/fd" % pid
  return sum(1 for name in os.listdir(fd_dir)
             if os.readlink(os.path.join(fd_dir, name)).startswith("socket:"))


def _Stop(pid):
  """Stop the daemon C{pid} as start-stop-daemon does: SIGTERM, then wait
  until the process is gone (reaped)."""
  os.kill(pid, signal.SIGTERM)
  WaitFor(lambda: not os.path.exists("/proc/%d" % pid), timeout=60,
          interval=0.01)


@pytest.fixture
def daemons():
  """Start daemons with C{daemons(state_dir, env, port=0)}, which returns
  C{(pid, port)}; those still running when the test ends are stopped."""
  pids = []

  def _Start(state_dir, env, port=0):
    (pid, port) = _StartDaemon(state_dir, env, port)
    pids.append(pid)
    return (pid, port)
  yield _Start
  for pid in pids:
    if Alive(pid):
      _Stop(pid)


def _Drainer(state_dir):
  """The pid of the drainer the daemon in C{state_dir} logged it forked."""
  (pid, ) = re.findall(r"attended by the drainer \(pid ([0-9]+)\)",
                       (state_dir / "daemon.log").read_text())
  return int(pid)


def _ProcessName(pid):
  with open("/proc/%d/comm" % pid) as handle:
    return handle.read().strip()


def _NothingLeft(runtime_dir, processes):
  """Wait until none of C{processes} lives, no process uses
  C{runtime_dir} and it is empty."""
  WaitFor(lambda: not any(Alive(pid) for pid in processes) and
          not ProcessesUsing(runtime_dir), timeout=30)
  assert os.listdir(runtime_dir) == []


@contextlib.contextmanager
def _StoppedDuringSlowRequest(tmp_path, pid, port):
  """Send C{GET /slow} to the daemon C{pid} and, once its handler runs,
  stop the daemon and wait for it to exit; yield the list the answer goes
  into (C{(status, body)}), which the handler gives when the block ends."""
  slow = []
  client = threading.Thread(target=_Get, args=(port, "/slow", slow))
  try:
    client.start()
    WaitFor((tmp_path / "entered").exists, timeout=30)
    os.kill(pid, signal.SIGTERM)
    WaitFor(lambda: not Alive(pid), timeout=30, interval=0.01)
    yield slow
  finally:
    (tmp_path / "release").write_text("")
    client.join(60)


@pytest.mark.parametrize("processes", [1, 2])
def test_a_request_whose_body_arrives_across_a_restart_runs(
    tmp_path, readable_dir, daemons, processes):
  """A PUT whose body is half sent when the daemon stops: lighttpd has it
  but waits for the rest before passing it on.  The stop returns, a new
  daemon starts (its start removes abandoned state directories), the rest
  of the body comes: the old daemon's handler answers it (in a process the
  drainer forked, or in a released worker), and once the old lighttpd has
  exited nothing of the old daemon is left."""
  env = _Environment(tmp_path, readable_dir, processes)
  (old_dir, new_dir) = (tmp_path / "old", tmp_path / "new")
  old_dir.mkdir()
  new_dir.mkdir()
  (old_pid, port) = daemons(old_dir, env)
  lighttpd = _Lighttpd(readable_dir)
  old_processes = _Children(old_pid)
  assert lighttpd in old_processes
  body = b"first half;" * 100 + b"second half." * 100
  head = (b"PUT /echo HTTP/1.1\r\nHost: node\r\nContent-Length: %d\r\n"
          b"Connection: close\r\n\r\n" % len(body))
  new_pid = None
  sockets = _Sockets(lighttpd)
  client = socket.create_connection(("127.0.0.1", port), timeout=60)
  try:
    client.sendall(head + body[:1100])
    WaitFor(lambda: _Sockets(lighttpd) > sockets)  # lighttpd accepted it
    _Stop(old_pid)
    (new_pid, _) = daemons(new_dir, env, port)
    client.sendall(body[1100:])
    answer = ReadUntilClosed(client)
  finally:
    client.close()
    if new_pid is not None:
      _Stop(new_pid)
  (head, _, content) = answer.partition(b"\r\n\r\n")
  assert head.startswith(b"HTTP/1.1 200 "), answer
  (handler_pid, echoed) = json.loads(content)
  assert echoed == body.decode()
  assert handler_pid not in (old_pid, new_pid)
  _NothingLeft(readable_dir,
               old_processes + [handler_pid, _Drainer(old_dir)])


@pytest.mark.parametrize("processes", [1, 2])
def test_a_released_lighttpds_last_lines_reach_its_error_log(
    tmp_path, readable_dir, lighttpd_log_dir, daemons, processes):
  """What lighttpd writes to its error log after the daemon's stop
  returned (here its last line, "server stopped", written as it exits
  once the request in flight is answered) lands in the daemon's
  lighttpd log."""
  env = _Environment(tmp_path, readable_dir, processes)
  (old_pid, port) = daemons(tmp_path, env)
  log_path = os.path.join(lighttpd_log_dir, "lighttpd-test.log")
  old_processes = _Children(old_pid)
  with _StoppedDuringSlowRequest(tmp_path, old_pid, port) as slow:
    with open(log_path) as log:
      assert "server stopped" not in log.read()
    drainer = _Drainer(tmp_path)
    # Not the daemon's name in ps.
    WaitFor(lambda: _ProcessName(drainer) == "test-drain")
  assert slow and slow[0][0] == 200, slow
  WaitFor(lambda: "server stopped" in open(log_path).read(), timeout=30)
  _NothingLeft(readable_dir, old_processes + [drainer])



def test_the_drainer_lets_in_only_its_lighttpd(tmp_path, readable_dir,
                                               daemons):
  """After the daemon's stop, another process (root here, whom the FastCGI
  socket's mode does not stop, as lighttpd's account) that claims a
  verified client certificate is turned away by the drainer, as it was by
  the daemon: the drainer lets in the released lighttpd only."""
  env = _Environment(tmp_path, readable_dir, 1)
  (old_pid, port) = daemons(tmp_path, env)
  old_processes = _Children(old_pid)
  (name, ) = os.listdir(readable_dir)
  path = lighttpd_layout.StateLayout(
    os.path.join(readable_dir, name)).fastcgi_socket
  forged = RequestBytes(Params("GET", "/", HTTPS="on",
                               SSL_CLIENT_VERIFY="SUCCESS"), [])
  with _StoppedDuringSlowRequest(tmp_path, old_pid, port) as slow:
    drainer = _Drainer(tmp_path)
    try:
      assert Exchange(path, forged) == []  # closed without an answer
    except ConnectionError:
      pass  # ... or reset (or a broken pipe), the request unread
    WaitFor(lambda: "pid=%d Refusing a FastCGI connection from pid %d" %
            (drainer, os.getpid()) in (tmp_path / "daemon.log").read_text())
  assert slow and slow[0][0] == 200, slow
  _NothingLeft(readable_dir, old_processes + [drainer])
