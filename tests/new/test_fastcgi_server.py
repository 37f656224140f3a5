"""What only the fastcgi backend has: lighttpd supervision, the FastCGI
socket's access control, certificate forwarding, worker processes, the
flag's errors at daemon start."""

import ctypes
import http.client
import io
import json
import logging
import os
import pickle
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from ganeti import http as ganeti_http
from ganeti.http.backends import selection as backend_flag
from ganeti.http.system import child_reaper
from ganeti.http.backends.fastcgi import flup_gateway as fastcgi_backend
from ganeti.http.backends.fastcgi import listener as fastcgi_listener
from ganeti.http.backends.fastcgi import peer_check
from ganeti.http.backends.fastcgi import workers as fastcgi_workers
from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.backends.fastcgi.lighttpd import layout as lighttpd_layout
from ganeti.http import server as http_server
from tests.conftest import SslParams
from tests.new.lighttpd_helpers import REPO, ProcessesUsing, WaitFor
from tests.new.test_fastcgi_connection import Exchange, Params, RequestBytes
from tests.script_daemon import GetJson, ScriptDaemon


def _WaitFor(condition, timeout=10.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(0.05)
  return False


def _Alive(pid):
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  try:
    with open("/proc/%d/stat" % pid) as stat:
      return stat.read().split(")")[-1].split()[0] != "Z"
  except FileNotFoundError:
    return False


class PidHandler(http_server.HttpServerHandler):
  """Answers with the pid of the process that ran it; can block or crash."""

  def __init__(self):
    http_server.HttpServerHandler.__init__(self)
    self.entered = threading.Event()
    self.release = threading.Event()

  def HandleRequest(self, req):
    if req.request_path == "/slow":
      self.entered.set()
      self.release.wait(30)
    elif req.request_path == "/crash":
      os._exit(3)  # pylint: disable=protected-access
    return json.dumps(os.getpid())


def _ForgedCertificateHeaders(credential):
  """Client headers claiming that lighttpd verified C{credential}'s
  certificate (lighttpd turns them into look-alike CGI variables)."""
  with open(credential.path) as handle:
    pem = handle.read()
  certificate = pem[pem.index("-----BEGIN CERTIFICATE"):]
  return {"SSL-Client-Cert": certificate.replace("\n", " "),
          "SSL-Client-Verify": "SUCCESS", "HTTPS": "on"}


def test_client_headers_cannot_pose_as_the_certificate(fastcgi, pki):
  digests = []
  running = fastcgi(PidHandler(), ssl_params=SslParams(pki.cluster),
                    ssl_verify_peer=True,
                    ssl_verify_callback=lambda d: digests.append(d) or True)
  forged = dict(_ForgedCertificateHeaders(pki.cluster), SSL_CLIENT_CERT="x")
  (status, _, _) = running.Request("GET", "/", headers=forged,
                                   client_cert=pki.node)
  assert status == 200
  assert digests == [pki.node.digest]


def test_certificate_ignored_on_plain_http(fastcgi, pki):
  """Without TLS no certificate reaches the check, whatever the client
  claims in headers lighttpd turns into look-alike CGI variables."""
  digests = []
  running = fastcgi(PidHandler(), ssl_verify_peer=True,
                    ssl_verify_callback=lambda d: digests.append(d) or True)
  (status, _, _) = running.Request(
    "GET", "/", headers=_ForgedCertificateHeaders(pki.node))
  assert status == 200
  assert digests == []


def test_fastcgi_socket_belongs_to_the_frontend(fastcgi):
  running = fastcgi(PidHandler())
  path = running.server._fastcgi_socket.getsockname()
  info = os.stat(path)
  assert info.st_mode & 0o777 == 0o600
  if os.geteuid() == 0:
    assert info.st_uid == pwd.getpwnam("www-data").pw_uid


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become another"
                    " user; CI runs as root")
def test_fastcgi_socket_refuses_another_user(fastcgi):
  running = fastcgi(PidHandler())
  path = running.server._fastcgi_socket.getsockname()
  (read_end, write_end) = os.pipe()
  pid = os.fork()
  if pid == 0:
    outcome = b"?"
    try:
      nobody = pwd.getpwnam("nobody")
      os.setgid(nobody.pw_gid)
      os.setuid(nobody.pw_uid)
      client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
      try:
        client.connect(path)
        outcome = b"connected"
      except PermissionError:
        outcome = b"refused"
    finally:
      os.write(write_end, outcome)
      os._exit(0)  # pylint: disable=protected-access
  os.close(write_end)
  os.waitpid(pid, 0)
  assert os.read(read_end, 100) == b"refused"
  os.close(read_end)
  # ... while lighttpd, running as the frontend user, still gets through.
  assert running.Request("GET", "/")[0] == 200


def test_lighttpd_killed_is_restarted(fastcgi):
  running = fastcgi(PidHandler())
  supervisor = running.server._supervisor
  first = supervisor.pid
  assert running.Request("GET", "/")[0] == 200
  os.kill(first, signal.SIGKILL)
  assert _WaitFor(lambda: supervisor.pid not in (None, first))
  # The daemon holds the port, so clients never see it closed.
  assert _WaitFor(lambda: running.Request("GET", "/")[0] == 200)
  assert not _Alive(first)


def test_stop_lets_a_request_in_flight_finish(fastcgi):
  handler = PidHandler()
  running = fastcgi(handler)
  lighttpd_pid = running.server._supervisor.pid
  results = []
  client = threading.Thread(
    target=lambda: results.append(running.Request("GET", "/slow")))
  client.start()
  assert handler.entered.wait(10)  # the request waits in the handler
  stopper = threading.Thread(target=running.server.Stop)
  stopper.start()
  # Longer than lighttpd's default graceful shutdown (8 s): Ganeti's RPCs
  # may take longer still.
  time.sleep(lighttpd_config.DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT + 1)
  handler.release.set()
  client.join(15)
  stopper.join(35)
  assert results and results[0][0] == 200
  assert not _Alive(lighttpd_pid)
  with pytest.raises(OSError):
    socket.create_connection(("127.0.0.1", running.port), timeout=2)


def test_worker_processes_share_the_load_and_are_restarted(fastcgi,
                                                           monkeypatch):
  monkeypatch.setenv("GANETI_HTTP_FASTCGI_PROCESSES", "2")
  running = fastcgi(PidHandler(), max_clients=2)
  workers = running.server._workers
  assert len(workers.pids) == 2
  assert os.getpid() not in workers.pids
  seen = set()
  assert _WaitFor(lambda: seen.add(json.loads(
    running.Request("GET", "/")[2])) or seen == workers.pids)
  # A worker dying mid-request costs that request only.
  (status, _, _) = running.Request("GET", "/crash")
  assert status >= 500
  assert _WaitFor(lambda: len(workers.pids) == 2 and
                  all(_Alive(pid) for pid in workers.pids))
  assert running.Request("GET", "/")[0] == 200
  pids = workers.pids
  running.server.Stop()
  assert not any(_Alive(pid) for pid in pids)


class ForkingHandler(http_server.HttpServerHandler):
  """Forks a child that exits at once, never waits for it, and answers
  with the child's pid and its own."""

  def HandleRequest(self, req):
    child = os.fork()
    if child == 0:
      os._exit(0)  # pylint: disable=protected-access
    return json.dumps([child, os.getpid()])


def test_worker_processes_reap_the_children_their_handlers_forget(
    fastcgi, monkeypatch):
  """Handlers run in the workers, so their forgotten children are the
  workers' to reap."""
  monkeypatch.setattr(child_reaper, "GRACE", 0.5)
  monkeypatch.setattr(child_reaper, "INTERVAL", 0.05)
  monkeypatch.setenv("GANETI_HTTP_FASTCGI_PROCESSES", "2")
  running = fastcgi(ForkingHandler())
  (child, worker) = json.loads(running.Request("GET", "/")[2])
  assert worker in running.server._workers.pids
  assert _WaitFor(lambda: not os.path.exists("/proc/%d" % child))


def test_only_its_lighttpd_may_use_the_fastcgi_socket(fastcgi, caplog):
  """Another process of lighttpd's account (here: root, whom the socket's
  mode does not stop) could claim a verified client certificate in its
  CGI variables; it is turned away."""
  running = fastcgi(PidHandler())
  path = running.server._fastcgi_socket.getsockname()
  forged = RequestBytes(Params("GET", "/", HTTPS="on",
                               SSL_CLIENT_VERIFY="SUCCESS"), [])
  with caplog.at_level(logging.WARNING):
    try:
      assert Exchange(path, forged) == []  # closed without an answer
    except ConnectionError:
      pass  # ... or reset (or a broken pipe), the request unread
  assert ("Refusing a FastCGI connection from pid %d" % os.getpid()
          in caplog.text)
  assert running.Request("GET", "/")[0] == 200


def _ExchangeAsPid(pid, path, request):
  """Send C{request} to the FastCGI socket C{path} from a process whose pid
  is C{pid} and whose parent is not this process (the kernel hands out
  pids after the one written to C{ns_last_pid}).

  @return: what L{Exchange} returned, or the name of the connection error;
      None if the pid could not be had
  """
  (reader, writer) = os.pipe()
  middle = os.fork()
  if middle == 0:
    try:
      os.close(reader)
      for _ in range(100):
        with open("/proc/sys/kernel/ns_last_pid", "w") as handle:
          handle.write(str(pid - 1))
        child = os.fork()
        if child == 0:
          if os.getpid() == pid:
            try:
              result = Exchange(path, request)
            except ConnectionError as err:
              result = type(err).__name__
            os.write(writer, pickle.dumps(result))
          os._exit(0)
        os.waitpid(child, 0)
        if child == pid:
          break
    finally:
      os._exit(0)
  os.close(writer)
  with os.fdopen(reader, "rb") as handle:
    data = handle.read()
  os.waitpid(middle, 0)
  return pickle.loads(data) if data else None


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="choosing a pid (ns_last_pid) needs root")
@pytest.mark.parametrize("pidfd", [True, False], ids=["pidfd", "start-time"])
def test_a_process_given_lighttpds_pid_is_refused(fastcgi, monkeypatch,
                                                  pidfd):
  """A process of lighttpd's account may kill lighttpd and be given its pid
  before the daemon restarts lighttpd; it still cannot pass for it (with a
  pidfd, or where the kernel has none, by the process's start time)."""
  if not pidfd:
    monkeypatch.delattr(os, "pidfd_open")
  running = fastcgi(PidHandler())
  supervisor = running.server._supervisor
  path = running.server._fastcgi_socket.getsockname()
  pid_file = lighttpd_layout.StateLayout(
    running.server._state_dir.path).pid_file
  forged = RequestBytes(Params("GET", "/", HTTPS="on",
                               SSL_CLIENT_VERIFY="SUCCESS"), [])
  # lighttpd is restarted at once, unless that fails: a binary that cannot
  # be executed makes the first restart fail, so the next one comes after
  # a back-off, while the impostor takes the pid.
  binary = supervisor._binary
  for _ in range(5):
    lighttpd = supervisor.pid
    assert _WaitFor(lambda: running.Request("GET", "/")[0] == 200)
    supervisor._binary = "/nonexistent/lighttpd"
    os.kill(lighttpd, signal.SIGKILL)
    assert _WaitFor(lambda: not os.path.exists("/proc/%d" % lighttpd))
    result = _ExchangeAsPid(lighttpd, path, forged)
    supervisor._binary = binary
    with open(pid_file) as handle:
      if result is not None and int(handle.read()) == lighttpd:
        break  # the pid file named the impostor all along
    assert _WaitFor(lambda: supervisor.pid not in (None, lighttpd))
  else:
    pytest.fail("No process got lighttpd's pid before lighttpd's restart")
  assert result in ([], "ConnectionResetError", "BrokenPipeError")
  assert _WaitFor(lambda: running.Request("GET", "/")[0] == 200)


def test_refusals_are_logged_at_most_once_per_interval(caplog):
  now = [1000.0]
  check = peer_check.PeerCheck(lambda: None, log_interval=60,
                                    clock=lambda: now[0])
  (ours, theirs) = socket.socketpair()
  with ours, theirs, caplog.at_level(logging.WARNING):
    for _ in range(3):
      assert not check.Allows(theirs)
      now[0] += 19
    assert caplog.text.count("Refusing") == 1
    now[0] += 4
    assert not check.Allows(theirs)
  assert caplog.text.count("Refusing") == 2
  assert "2 more refused unlogged" in caplog.text


def test_handler_raising_systemexit_costs_no_thread(fastcgi):
  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      if req.request_path == "/exit":
        raise SystemExit(1)
      return "ok"

  running = fastcgi(Handler(), max_clients=1)  # a single thread
  assert running.Request("GET", "/exit")[0] >= 500
  assert running.Request("GET", "/")[::2] == (200, b"ok")


def test_failed_fork_leaves_sigterm_unblocked(monkeypatch, tmp_path):
  def FailingFork():
    raise BlockingIOError("fork: resource temporarily unavailable")

  listen_socket = fastcgi_listener.BindUnixSocket(str(tmp_path / "s.sock"))
  gateway = fastcgi_backend.FlupGateway(lambda environ, start: [], False, 2)
  workers = fastcgi_workers.ForkedWorkers(
    lambda: fastcgi_listener.FastCgiListener(gateway, listen_socket, 2), 2)
  monkeypatch.setattr(os, "fork", FailingFork)
  try:
    with pytest.raises(BlockingIOError):
      workers.Start()
  finally:
    listen_socket.close()
  assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_restart_waits_when_fork_fails(monkeypatch, tmp_path, caplog):
  """A worker that cannot be forked again is retried later; the thread
  watching the workers goes on (it died with the error before)."""
  listen_socket = fastcgi_listener.BindUnixSocket(str(tmp_path / "s.sock"))
  gateway = fastcgi_backend.FlupGateway(lambda environ, start: [], False, 2)
  workers = fastcgi_workers.ForkedWorkers(
    lambda: fastcgi_listener.FastCgiListener(gateway, listen_socket, 2), 1)
  try:
    workers.Start()
    (pid, ) = workers.pids
    real_fork = os.fork
    failures = []

    def FailingOnce():
      if not failures:
        failures.append(True)
        raise BlockingIOError("fork: resource temporarily unavailable")
      return real_fork()

    monkeypatch.setattr(os, "fork", FailingOnce)
    with caplog.at_level(logging.ERROR):
      os.kill(pid, signal.SIGKILL)
      WaitFor(lambda: failures and len(workers.pids) == 1 and
              pid not in workers.pids)
    assert "Cannot fork a FastCGI worker" in caplog.text
  finally:
    workers.Stop(timeout=10)
    listen_socket.close()


def test_new_worker_never_runs_the_daemons_sigterm_handler(tmp_path):
  """A worker stopped right after its fork gets SIGTERM before it has set
  its own handler; it must not run the daemon's (which would not stop it:
  Stop() then waits for its timeout and kills it)."""
  parent = os.getpid()
  marker = tmp_path / "daemon-handler-ran-in-a-worker"

  def DaemonHandler(*_):
    if os.getpid() != parent:
      marker.write_text("%d" % os.getpid())

  listen_socket = fastcgi_listener.BindUnixSocket(str(tmp_path / "s.sock"))
  gateway = fastcgi_backend.FlupGateway(lambda environ, start: [], False, 2)
  previous = signal.signal(signal.SIGTERM, DaemonHandler)
  try:
    for _ in range(5):
      workers = fastcgi_workers.ForkedWorkers(
        lambda: fastcgi_listener.FastCgiListener(gateway, listen_socket, 2), 2)
      workers.Start()
      workers.Stop(timeout=30)
  finally:
    signal.signal(signal.SIGTERM, previous)
    listen_socket.close()
  assert not marker.exists()


def test_workers_dying_young_are_restarted_ever_more_slowly(caplog):
  """A worker that cannot start is forked again after 0.5, 1, 2, ...
  seconds, not in a loop (which forked 20 a second)."""
  def CannotStart():
    raise RuntimeError("cannot start")

  workers = fastcgi_workers.ForkedWorkers(CannotStart, 2)
  with caplog.at_level(logging.ERROR):
    workers.Start()
    try:
      time.sleep(3)
    finally:
      workers.Stop(timeout=10)
  exits = caplog.text.count("exited (status")
  # Each early death doubles the delay: 2 forks at 0 s, 2 more after
  # 1 s, the next ones only after 4 s more (without it: about 30 exits).
  assert 2 <= exits <= 8
  assert "restarting in 2.0 s" in caplog.text


def test_unknown_backend_value_stops_the_daemon(monkeypatch, tmp_path):
  config = tmp_path / "http-backend.conf"
  config.write_text("[backends]\ntest = fastcgj\n")
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(config))
  monkeypatch.delenv("GANETI_HTTP_BACKEND", raising=False)
  monkeypatch.delenv("GANETI_HTTP_BACKEND_TEST", raising=False)
  with pytest.raises(backend_flag.BackendFlagError) as error:
    http_server.HttpServer("127.0.0.1", 0, PidHandler(), daemon_name="test")
  assert "fastcgj" in str(error.value)
  assert str(config) in str(error.value)


def test_fastcgi_without_usable_lighttpd_names_the_flag(monkeypatch, tmp_path):
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nlighttpd = %s\n" % (tmp_path / "missing"))
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(config))
  monkeypatch.setenv("GANETI_HTTP_BACKEND_TEST", "fastcgi")
  with pytest.raises(backend_flag.BackendFlagError) as error:
    http_server.HttpServer("127.0.0.1", 0, PidHandler(), daemon_name="test")
  assert "GANETI_HTTP_BACKEND_TEST" in str(error.value)
  assert "lighttpd" in str(error.value)


def test_backend_attribute_and_log(fastcgi, caplog):
  running = fastcgi(PidHandler())
  assert running.server.backend == "fastcgi"
  assert "HTTP backend of test: fastcgi" in caplog.text
  assert "ganeti-http-shim %s" % ganeti_http.SHIM_VERSION in caplog.text


def test_handler_exception_in_a_worker_keeps_daemon_serving(fastcgi,
                                                            monkeypatch):
  monkeypatch.setenv("GANETI_HTTP_FASTCGI_PROCESSES", "2")

  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      if req.request_path == "/boom":
        raise ganeti_http.HttpBadGateway("upstream gone")
      return b"ok"

  running = fastcgi(Handler())
  for _ in range(4):
    assert running.Request("GET", "/boom")[0] == 502
    assert running.Request("GET", "/")[::2] == (200, b"ok")


class CountingFile(io.FileIO):
  """A real file that counts how often the backend read data from it.

  The read at the end of the file is not counted: the backend may make it
  after the client has the whole body (and has started its next request).
  """

  reads = 0

  def read(self, size=-1):
    data = io.FileIO.read(self, size)
    if data:
      CountingFile.reads += 1
    return data


def _ReadableDirectory(prefix):
  """Yield a fresh directory lighttpd's unprivileged user can read (outside
  pytest's own, which only root may enter); remove it afterwards."""
  directory = tempfile.mkdtemp(prefix=prefix)
  os.chmod(directory, 0o755)
  yield directory
  shutil.rmtree(directory)


@pytest.fixture
def export_dir():
  """A directory to hand files from."""
  yield from _ReadableDirectory("ganeti-http-export-")


def test_files_in_sendfile_dirs_are_sent_by_lighttpd(fastcgi, monkeypatch,
                                                     tmp_path, export_dir):
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nsendfile-dirs = %s\n" % export_dir)
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(config))
  inside = os.path.join(export_dir, "disk.img")
  outside = str(tmp_path / "secret.img")
  escape = os.path.join(export_dir, "escape.img")
  payload = os.urandom(3 * 1024 * 1024)
  for path in (inside, outside):
    with open(path, "wb") as handle:
      handle.write(payload)
    os.chmod(path, 0o644)
  os.symlink(outside, escape)

  class Handler(http_server.HttpServerHandler):
    def HandleRequest(self, req):
      return CountingFile(req.request_path, "r")

  running = fastcgi(Handler())
  CountingFile.reads = 0
  assert running.Request("GET", inside)[::2] == (200, payload)
  assert CountingFile.reads == 0
  # Outside the list, or escaping it by a symlink: the backend sends it.
  for path in (outside, escape):
    assert running.Request("GET", path)[::2] == (200, payload)
    assert CountingFile.reads > 0
    CountingFile.reads = 0


_STARTED_DAEMON = """
import sys
from ganeti.http import server as http_server
from tests.new.test_fastcgi_server import PidHandler
server = http_server.HttpServer("127.0.0.1", 0, PidHandler(),
                                daemon_name="test")
server.Start()
print(server._state_dir.path, flush=True)
sys.stdin.read()
"""


def test_state_dirs_of_killed_daemons_are_removed(fastcgi, monkeypatch,
                                                  tmp_path, readable_dir):
  """A daemon killed without stopping leaves its state directory; the next
  server started with that runtime directory removes it, and leaves those
  of running servers and what it did not make alone."""
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nruntime-dir = %s\n" % readable_dir)
  daemon = subprocess.Popen(
    [sys.executable, "-c", _STARTED_DAEMON], stdin=subprocess.PIPE,
    stdout=subprocess.PIPE, cwd=REPO,
    env=dict(os.environ, GANETI_HTTP_BACKEND="fastcgi",
             GANETI_HTTP_BACKEND_CONFIG=str(config), PYTHONPATH=REPO))
  try:
    killed_dir = daemon.stdout.readline().decode().strip()
  finally:
    daemon.kill()
    daemon.wait()
    daemon.stdin.close()
    daemon.stdout.close()
  assert os.path.dirname(killed_dir) == readable_dir
  WaitFor(lambda: not ProcessesUsing(killed_dir))  # the lifeline's work
  foreign = os.path.join(readable_dir, "ganeti-http-not-a-state-dir")
  os.mkdir(foreign)
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(config))
  first = fastcgi(PidHandler()).server._state_dir.path
  assert sorted(os.listdir(readable_dir)) == sorted(
    [os.path.basename(first), os.path.basename(foreign)])
  second = fastcgi(PidHandler()).server._state_dir.path
  assert sorted(os.listdir(readable_dir)) == sorted(
    [os.path.basename(path) for path in (first, second, foreign)])


class PausingStreamHandler(http_server.HttpServerHandler):
  """Streams "first", then waits 3 s before "second"."""

  def HandleRequest(self, req):
    yield b"first;"
    time.sleep(3)
    yield b"second"


@pytest.mark.parametrize("write_idle_timeout", [1, 10])
def test_write_idle_timeout_bounds_silence_in_a_streamed_response(
    fastcgi, monkeypatch, tmp_path, write_idle_timeout):
  """lighttpd cuts a started response whose next piece does not come
  within server.max-write-idle: the setting that raises it works."""
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nwrite-idle-timeout = %d\n" %
                    write_idle_timeout)
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(config))
  running = fastcgi(PausingStreamHandler())
  connection = running.Connection(timeout=30)
  try:
    connection.request("GET", "/")
    response = connection.getresponse()
    assert response.status == 200
    if write_idle_timeout == 1:
      with pytest.raises(http.client.IncompleteRead):
        response.read()
    else:
      assert response.read() == b"first;second"
  finally:
    connection.close()


def test_failed_start_leaves_no_backend_behind(monkeypatch, tmp_path):
  """A configuration that cannot be rendered stops Start() with the error,
  after stopping the backend it had started (here 2 worker processes)."""
  runtime_dir = tmp_path / "run"
  runtime_dir.mkdir()
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nruntime-dir = %s\nprocesses = 2\n" %
                    runtime_dir)
  monkeypatch.setenv("GANETI_HTTP_BACKEND", "fastcgi")
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(config))

  class Handler(http_server.HttpServerHandler):
    STREAM_REQUEST_BODY = True
    REQUEST_BODY_LIMIT = 1e9  # not an int: lighttpd's limit cannot be set

  server = http_server.HttpServer("127.0.0.1", 0, Handler(),
                                  daemon_name="test")
  try:
    with pytest.raises(ValueError):
      server.Start()
    assert os.listdir(str(runtime_dir)) == []
    WaitFor(lambda: not ProcessesUsing(str(runtime_dir)))
  finally:
    server.Stop()


@pytest.fixture
def readable_dir():
  """Another directory lighttpd's unprivileged user can read."""
  yield from _ReadableDirectory("ganeti-http-other-")


def _WriteReadable(path, data):
  with open(path, "wb") as handle:
    handle.write(data)
  os.chmod(path, 0o644)


class FileByKeyHandler(http_server.HttpServerHandler):
  """GET /<key> returns what C{self.open_file[key]()} opens."""

  def __init__(self, open_file):
    http_server.HttpServerHandler.__init__(self)
    self.open_file = open_file

  def HandleRequest(self, req):
    return self.open_file[req.request_path[1:]]()


def test_sendfile_names_lighttpd_would_misread(fastcgi, monkeypatch,
                                               tmp_path, export_dir,
                                               readable_dir):
  """lighttpd URL-decodes X-Sendfile and wants UTF-8: a "%65sc" must not
  become "esc" (here a symlink out of the directory), a CR/LF in a name
  must not end the header, and other names must still work."""
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nsendfile-dirs = %s\n" % export_dir)
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(config))
  secret = os.path.join(readable_dir, "secret")
  _WriteReadable(secret, b"SECRET")
  os.symlink(secret, os.path.join(export_dir, "esc"))
  names = {"percent": "%65sc", "newline": "plain\r\nX-Injected: yes",
           "accent": "caf\u00e9.txt", "kanji": "\u65e5\u672c.txt"}
  for (key, name) in names.items():
    _WriteReadable(os.path.join(export_dir, name), key.encode() * 1000)

  def _Opener(name):
    return lambda: CountingFile(os.path.join(export_dir, name), "r")

  running = fastcgi(FileByKeyHandler(
    dict((key, _Opener(name)) for (key, name) in names.items())))
  for key in names:
    CountingFile.reads = 0
    (status, headers, raw) = running.Request("GET", "/" + key)
    assert (status, raw) == (200, key.encode() * 1000), key
    assert "X-Injected" not in headers
    # lighttpd sent them, but for the one it cannot open by name
    assert (CountingFile.reads > 0) == (key == "newline"), key


def test_sendfile_only_while_the_path_names_the_open_file(
    fastcgi, monkeypatch, tmp_path, export_dir):
  """A file unlinked or replaced after the handler opened it, or deleted
  when closed, still reaches the client with the contents it had."""
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nsendfile-dirs = %s\n" % export_dir)
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(config))
  path = os.path.join(export_dir, "data")

  def Unlinked():
    _WriteReadable(path, b"unlinked" * 1000)
    handle = open(path, "rb")
    os.unlink(path)
    return handle

  def Replaced():
    _WriteReadable(path, b"old" * 1000)
    handle = open(path, "rb")
    _WriteReadable(path + ".new", b"new" * 1000)
    os.rename(path + ".new", path)
    return handle

  def Temporary():
    handle = tempfile.NamedTemporaryFile(dir=export_dir)
    handle.write(b"temporary" * 1000)
    handle.flush()
    handle.seek(0)
    os.chmod(handle.name, 0o644)
    return handle

  stable = os.path.join(export_dir, "stable")
  running = fastcgi(FileByKeyHandler({"unlinked": Unlinked,
                                      "replaced": Replaced,
                                      "temporary": Temporary,
                                      "stable": lambda: open(stable, "rb")}))
  assert running.Request("GET", "/unlinked")[::2] == (200, b"unlinked" * 1000)
  assert running.Request("GET", "/replaced")[::2] == (200, b"old" * 1000)
  # Sent by lighttpd, replaced between two requests: lighttpd must not
  # answer the second from what it remembers of the first.
  for contents in (b"first " * 1000, b"other " * 1000):
    _WriteReadable(stable + ".new", contents)
    os.rename(stable + ".new", stable)
    assert running.Request("GET", "/stable")[::2] == (200, contents)
  assert running.Request("GET", "/temporary")[::2] == (
    200, b"temporary" * 1000)
  # and the temporary file is gone, once lighttpd is done with it
  WaitFor(lambda: sorted(os.listdir(export_dir)) == ["data", "stable"])


def test_sendfile_dir_given_by_a_symlink(fastcgi, monkeypatch, tmp_path,
                                        export_dir):
  link = str(tmp_path / "export-link")
  os.symlink(export_dir, link)
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nsendfile-dirs = %s\n" % link)
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(config))
  _WriteReadable(os.path.join(export_dir, "disk.img"), b"disk" * 1000)
  running = fastcgi(FileByKeyHandler({
    "disk": lambda: CountingFile(os.path.join(link, "disk.img"), "r")}))
  CountingFile.reads = 0
  assert running.Request("GET", "/disk")[::2] == (200, b"disk" * 1000)
  assert CountingFile.reads == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="privileges are only dropped"
                    " when the daemon runs as root; CI runs as root")
def test_frontend_unprivileged_handler_in_the_daemon(fastcgi, pki):
  running = fastcgi(PidHandler(), ssl_params=SslParams(pki.cluster))
  lighttpd_pid = running.server._supervisor.pid
  with open("/proc/%d/status" % lighttpd_pid) as status:
    uids = [line.split()[1:] for line in status if line.startswith("Uid:")][0]
  assert set(uids) == {str(pwd.getpwnam("www-data").pw_uid)}
  # The handler still runs in the daemon's own (root) process.
  (status, _, raw) = running.Request("GET", "/")
  assert (status, json.loads(raw)) == (200, os.getpid())


def MallocArenas():
  """glibc's count of malloc arenas ("heaps") in this process."""
  libc = ctypes.CDLL(None)
  libc.fopen.restype = ctypes.c_void_p
  libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
  libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
  libc.fclose.argtypes = [ctypes.c_void_p]
  with tempfile.NamedTemporaryFile() as report:
    stream = libc.fopen(report.name.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    return report.read().count(b"<heap nr=")


class LockedMemoryHandler(http_server.HttpServerHandler):
  """Answers with its pid and how much memory its process has locked."""

  def HandleRequest(self, req):
    with open("/proc/self/status") as status:
      locked = [line.split()[1] for line in status
                if line.startswith("VmLck:")]
    return json.dumps([os.getpid(), int(locked[0])])


# Locks all its memory first, as Ganeti's node daemon does, or a single
# page (as a crypto library may); prints its port.
_LOCKED_DAEMON = """
import ctypes, mmap, sys
from ganeti.http import server as http_server
from tests.new.test_fastcgi_server import LockedMemoryHandler
from tests.script_daemon import ServeUntilStdinCloses
libc = ctypes.CDLL(None, use_errno=True)
if sys.argv[1] == "mlockall":
  assert libc.mlockall(1 | 2) == 0
else:
  page = mmap.mmap(-1, 4096)
  address = ctypes.addressof(ctypes.c_char.from_buffer(page))
  assert libc.mlock(ctypes.c_void_p(address), 4096) == 0
server = http_server.HttpServer("127.0.0.1", 0, LockedMemoryHandler(),
                                daemon_name="test", max_clients=4)
ServeUntilStdinCloses(server)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="mlockall needs root (or a"
                    " memlock limit); CI runs as root")
@pytest.mark.parametrize("locked", ["mlockall", "one-page"])
def test_worker_processes_lock_memory_as_the_daemon_did(tmp_path, locked):
  """Memory locks are not inherited across fork: a daemon that locked its
  memory (noded) has workers that lock theirs; one that locked a page
  has workers that lock nothing."""
  answers = {}
  with ScriptDaemon(_LOCKED_DAEMON, tmp_path, processes=2,
                    args=[locked]) as (daemon_pid, port):

    def _BothWorkersAnswered():
      (pid, locked_kib) = GetJson(port, timeout=30)
      answers[pid] = locked_kib
      return len(answers) == 2

    # A worker accepts only once it has locked its memory, which takes a
    # while (the child's copy of the daemon's ~140 MiB, longer under
    # load): the worker that is ready first may take any number of
    # requests meanwhile.  Ask until both have answered.
    WaitFor(_BothWorkersAnswered, timeout=120, interval=0)
  assert len(answers) == 2 and daemon_pid not in answers
  if locked == "mlockall":
    assert all(locked_kib > 1024 for locked_kib in answers.values()), answers
  else:
    assert all(locked_kib == 0 for locked_kib in answers.values()), answers


class ArenaHandler(http_server.HttpServerHandler):
  """Answers with the pid and malloc arena count of its process, after
  allocating from every thread that serves."""

  def HandleRequest(self, req):
    buffers = [bytearray(256 << 10) for _ in range(8)]
    del buffers
    return json.dumps([os.getpid(), MallocArenas()])


# A daemon of its own (this test process has made arenas its forked
# workers would inherit): prints its port and its own arena count.
_ARENA_DAEMON = """
from ganeti.http import server as http_server
from tests.new.test_fastcgi_server import ArenaHandler, MallocArenas
from tests.script_daemon import ServeUntilStdinCloses
server = http_server.HttpServer("127.0.0.1", 0, ArenaHandler(),
                                daemon_name="test", max_clients=20)
ServeUntilStdinCloses(server, lambda port: [port, MallocArenas()])
"""


def test_worker_processes_limit_malloc_arenas(tmp_path):
  """Each thread would get an arena of its own (up to 8 per core), each
  keeping what its thread freed; workers cap new ones (they keep those
  the daemon had when it forked them)."""
  with ScriptDaemon(_ARENA_DAEMON, tmp_path, processes=2) as (
      _, (port, daemon_arenas)):
    answers = {}
    statuses = []

    def _Ask():
      connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
      try:
        connection.request("GET", "/")
        response = connection.getresponse()
        statuses.append(response.status)
        if response.status == 200:
          (pid, arenas) = json.loads(response.read())
          answers.setdefault(pid, []).append(arenas)
      finally:
        connection.close()

    for _ in range(5):
      threads = [threading.Thread(target=_Ask) for _ in range(20)]
      for thread in threads:
        thread.start()
      for thread in threads:
        thread.join()
  assert statuses == [200] * 100
  assert len(answers) == 2  # both workers answered
  limit = max(daemon_arenas, fastcgi_workers.WORKER_MALLOC_ARENAS)
  assert limit < 10  # what 10 threads a worker would make without the cap
  for counts in answers.values():
    assert max(counts) <= limit, (counts, daemon_arenas)
