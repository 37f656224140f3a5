"""The lighttpd supervisor with real processes: start, restart, stop, clean up.
"""

import http.client
import logging
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.backends.fastcgi.lighttpd.supervisor import (
  LighttpdError, LighttpdSupervisor)
from tests.new.lighttpd_helpers import (REPO, Alive, ListeningSocket,
                                        ProcessesMentioning, Request,
                                        Settings, WaitFor, fcgi_app,
                                        scratch_dir, supervise)

_ = (fcgi_app, scratch_dir, supervise)  # fixtures

#: Restart quickly in tests.
_FAST = {"backoff_initial": 0.1, "backoff_max": 0.4}


def _Plain(supervise, scratch_dir, fcgi_app, **kwargs):
  """A supervisor of plain-HTTP lighttpd binding a free port itself."""
  settings = Settings(scratch_dir, fcgi_app.socket_path)
  supervisor = supervise(lighttpd_config.render(settings), settings.state_dir,
                         address=("127.0.0.1", settings.port), **kwargs)
  return (supervisor, settings.port)


def _Activated(supervise, scratch_dir, fcgi_app, listener, **kwargs):
  """A supervisor of lighttpd taking over C{listener}."""
  (host, port) = listener.getsockname()[:2]
  settings = Settings(scratch_dir, fcgi_app.socket_path, bind_address=host,
                      port=port, socket_activation=True)
  return supervise(lighttpd_config.render(settings), settings.state_dir,
                   listen_socket=listener, **kwargs)


@pytest.fixture
def listener():
  """A listening socket on a port the kernel chose (bound to port 0)."""
  sock = ListeningSocket()
  yield sock
  sock.close()


def test_start_answers(supervise, scratch_dir, fcgi_app):
  (supervisor, port) = _Plain(supervise, scratch_dir, fcgi_app)
  assert supervisor.pid is None
  supervisor.start()
  assert Alive(supervisor.pid)
  assert Request("127.0.0.1", port)[::2] == (200, b"hello\n")
  state_dir = os.path.dirname(supervisor.config_path)
  assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
  assert stat.S_IMODE(os.stat(supervisor.config_path).st_mode) == 0o600


def test_start_with_inherited_socket(supervise, scratch_dir, fcgi_app,
                                     listener):
  supervisor = _Activated(supervise, scratch_dir, fcgi_app, listener)
  supervisor.start()
  port = listener.getsockname()[1]
  assert Request("127.0.0.1", port)[::2] == (200, b"hello\n")
  # lighttpd listens on the daemon's socket only, and opened no other
  lighttpd_sockets = _ListeningPorts(supervisor.pid)
  assert lighttpd_sockets == {port}


def _ListeningPorts(pid):
  """TCP ports a process has listening sockets on."""
  inodes = set()
  for name in os.listdir("/proc/%d/fd" % pid):
    try:
      target = os.readlink("/proc/%d/fd/%s" % (pid, name))
    except OSError:
      continue
    if target.startswith("socket:["):
      inodes.add(target[len("socket:["):-1])
  ports = set()
  for table in ("/proc/net/tcp", "/proc/net/tcp6"):
    with open(table) as handle:
      for line in handle.readlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
          ports.add(int(fields[1].rsplit(":", 1)[1], 16))
  return ports


def _WaitRestarted(supervisor, old_pid, caplog):
  """Wait until the supervisor has seen a new lighttpd answer."""
  WaitFor(lambda: supervisor.pid != old_pid and any(
    "lighttpd restarted (pid %s)" % supervisor.pid in record.getMessage()
    for record in caplog.records))


def _OpenPipes():
  count = 0
  for descriptor in os.listdir("/proc/self/fd"):
    try:
      count += os.readlink("/proc/self/fd/" + descriptor).startswith("pipe:")
    except OSError:
      pass  # the listing's own descriptor, gone
  return count


def test_failed_restarts_leak_no_descriptor(supervise, scratch_dir, fcgi_app,
                                            caplog):
  """Each restart that fails before lighttpd runs (here: its output file
  cannot be opened) closes everything it opened."""
  (supervisor, _) = _Plain(supervise, scratch_dir, fcgi_app, **_FAST)
  supervisor.start()
  stderr_path = os.path.join(os.path.dirname(supervisor.config_path),
                             "lighttpd.stderr")
  os.unlink(stderr_path)
  os.symlink("/dev/null", stderr_path)  # refused: O_NOFOLLOW

  def _Failures():
    return sum("Restarting lighttpd failed" in record.getMessage()
               for record in caplog.records)
  os.kill(supervisor.pid, signal.SIGKILL)
  WaitFor(lambda: _Failures() >= 1)
  pipes = _OpenPipes()  # the killed lighttpd's lifeline is gone by now
  WaitFor(lambda: _Failures() >= 4)
  assert _OpenPipes() == pipes
  os.unlink(stderr_path)


@pytest.mark.parametrize("activated", [False, True])
def test_killed_lighttpd_is_restarted(supervise, scratch_dir, fcgi_app,
                                      listener, activated, caplog):
  if activated:
    supervisor = _Activated(supervise, scratch_dir, fcgi_app, listener,
                            **_FAST)
    port = listener.getsockname()[1]
  else:
    (supervisor, port) = _Plain(supervise, scratch_dir, fcgi_app, **_FAST)
  supervisor.start()
  first = supervisor.pid
  lifeline = supervisor.lifeline_pid
  os.kill(first, signal.SIGKILL)
  _WaitRestarted(supervisor, first, caplog)
  assert Request("127.0.0.1", port)[::2] == (200, b"hello\n")
  assert not Alive(first)
  assert not Alive(lifeline)  # the old lifeline went with it
  assert Alive(supervisor.lifeline_pid)
  assert any("exited with status -9" in record.getMessage()
             for record in caplog.records)


def test_huge_error_log_is_quoted_in_part(supervise, scratch_dir, fcgi_app,
                                         caplog):
  """lighttpd's user owns its error log and may fill it: when lighttpd
  dies, only the end of the log is read and quoted, long lines cut."""
  (supervisor, _) = _Plain(supervise, scratch_dir, fcgi_app, **_FAST)
  supervisor.start()
  first = supervisor.pid
  with open(os.path.join(scratch_dir, "state", "error.log"), "ab") as log:
    log.write(b"x" * (16 << 20) + b"\nlast words\n")
  os.kill(first, signal.SIGKILL)
  _WaitRestarted(supervisor, first, caplog)
  (message, ) = [record.getMessage() for record in caplog.records
                 if "exited with status -9" in record.getMessage()]
  assert "last words" in message
  assert "x" * 1024 + " [...]" in message
  assert len(message) < 4096


def test_clients_wait_while_lighttpd_restarts(supervise, scratch_dir,
                                              fcgi_app, listener):
  # With the daemon holding the socket, a client arriving while lighttpd is
  # down is queued in the backlog and served by the next lighttpd.
  supervisor = _Activated(supervise, scratch_dir, fcgi_app, listener,
                          backoff_initial=1.0)
  supervisor.start()
  first = supervisor.pid
  os.kill(first, signal.SIGKILL)
  WaitFor(lambda: not Alive(first))
  started = time.monotonic()
  assert Request("127.0.0.1", listener.getsockname()[1])[::2] == (
    200, b"hello\n")
  assert time.monotonic() - started >= 0.5  # it waited for the restart
  assert supervisor.pid != first


def test_restart_backs_off_while_lighttpd_keeps_failing(
    supervise, scratch_dir, fcgi_app, caplog):
  (supervisor, port) = _Plain(supervise, scratch_dir, fcgi_app, **_FAST)
  supervisor.start()
  with open(supervisor.config_path) as handle:
    good = handle.read()
  with open(supervisor.config_path, "w") as handle:
    handle.write("server.port = 1\n")  # no document root: lighttpd exits
  os.kill(supervisor.pid, signal.SIGKILL)

  def _Failures():
    return [record.getMessage() for record in caplog.records
            if record.getMessage().startswith("Restarting lighttpd failed")]
  WaitFor(lambda: len(_Failures()) >= 3)
  with open(supervisor.config_path, "w") as handle:
    handle.write(good)
  WaitFor(lambda: _Answers(port))
  delays = [float(message.split("next try in ")[1].split(" s")[0])
            for message in _Failures()[:3]]
  assert delays == [0.2, 0.4, 0.4]  # doubling, capped at backoff_max
  assert "server.document-root is not set" in _Failures()[0]


def test_back_off_resets_after_a_stable_run(supervise, scratch_dir, fcgi_app,
                                           caplog):
  (supervisor, port) = _Plain(supervise, scratch_dir, fcgi_app,
                              stable_period=30.0, **_FAST)
  supervisor.start()

  def _Delays():
    return [float(record.getMessage().split("restarting in ")[1].split()[0])
            for record in caplog.records
            if "; restarting in " in record.getMessage()]

  def _KillAndWait():
    pid = supervisor.pid
    count = len(_Delays())
    os.kill(pid, signal.SIGKILL)
    WaitFor(lambda: len(_Delays()) > count)
    # until the supervisor itself saw the new lighttpd answer
    _WaitRestarted(supervisor, pid, caplog)
    assert _Answers(port)
  _KillAndWait()
  _KillAndWait()  # crashed again at once: the wait doubled
  supervisor._instance.started -= 31  # as if it had run for the period
  _KillAndWait()  # after a stable run: back to the first wait
  assert _Delays() == [0.1, 0.2, 0.1]


def _Answers(port):
  try:
    return Request("127.0.0.1", port, timeout=1)[0] == 200
  except OSError:
    return False


def test_stop_is_graceful(supervise, scratch_dir, fcgi_app):
  (supervisor, port) = _Plain(supervise, scratch_dir, fcgi_app)
  supervisor.start()
  pid = supervisor.pid
  result = {}

  def _Slow():
    result["response"] = Request("127.0.0.1", port, path="/slow?1.5")
  client = threading.Thread(target=_Slow)
  client.start()
  try:
    WaitFor(lambda: os.path.exists(fcgi_app.slow_marker))
    started = time.monotonic()
    supervisor.stop(timeout=10)
    took = time.monotonic() - started
  finally:
    client.join(10)
  assert result["response"][::2] == (200, b"slow done\n")
  assert 1.0 <= took < 5  # it waited for the request, not for the timeout
  assert not Alive(pid)
  with pytest.raises(OSError):
    socket.create_connection(("127.0.0.1", port), timeout=1)


def test_stop_kills_after_timeout(supervise, scratch_dir, fcgi_app):
  (supervisor, port) = _Plain(supervise, scratch_dir, fcgi_app)
  supervisor.start()
  pid = supervisor.pid
  errors = []

  def _Slow():
    try:
      Request("127.0.0.1", port, path="/slow?5")
    except (OSError, http.client.HTTPException) as err:
      errors.append(err)
  client = threading.Thread(target=_Slow)
  client.start()
  try:
    WaitFor(lambda: os.path.exists(fcgi_app.slow_marker))
    started = time.monotonic()
    supervisor.stop(timeout=0.5)
    assert time.monotonic() - started < 3
  finally:
    client.join(10)
  assert not Alive(pid)
  assert errors  # the request in flight was cut off


def test_stop_leaves_no_process(supervise, scratch_dir, fcgi_app, listener):
  supervisor = _Activated(supervise, scratch_dir, fcgi_app, listener)
  supervisor.start()
  pids = (supervisor.pid, supervisor.lifeline_pid)
  assert all(Alive(pid) for pid in pids)
  supervisor.stop()
  assert not any(Alive(pid) for pid in pids)
  assert supervisor.pid is None
  assert ProcessesMentioning(os.path.dirname(supervisor.config_path)) == []
  supervisor.stop()  # again: harmless
  # and it can start again
  supervisor.start()
  assert Request("127.0.0.1", listener.getsockname()[1])[0] == 200


@pytest.mark.parametrize(("text", "message"), [
  ('server.document-root = "/"\nserver.modules = ("mod_no_such_module")\n',
   "mod_no_such_module"),
  ("server.port = \n", "parser failed"),
  ('server.document-root = "/"\nserver.port = "many"\n', "server.port"),
  ])
def test_invalid_config_is_refused_with_lighttpd_message(
    supervise, scratch_dir, text, message):
  supervisor = supervise(text, os.path.join(scratch_dir, "state"),
                         address=("127.0.0.1", 9))
  with pytest.raises(LighttpdError) as info:
    supervisor.check()
  assert message in str(info.value)
  assert message in info.value.output
  with pytest.raises(LighttpdError):
    supervisor.start()
  assert supervisor.pid is None


def test_start_fails_when_lighttpd_exits(supervise, scratch_dir, fcgi_app):
  # Valid configuration, but the port is taken: lighttpd exits at startup.
  occupier = ListeningSocket()
  try:
    port = occupier.getsockname()[1]
    settings = Settings(scratch_dir, fcgi_app.socket_path, port=port)
    supervisor = supervise(lighttpd_config.render(settings),
                           settings.state_dir, address=("127.0.0.1", port))
    with pytest.raises(LighttpdError) as info:
      supervisor.start()
    assert "Address already in use" in str(info.value)
    assert "exited with status" in str(info.value)
    assert ProcessesMentioning(settings.state_dir) == []
  finally:
    occupier.close()


def test_start_fails_when_lighttpd_does_not_answer(supervise, scratch_dir,
                                                   fcgi_app):
  # lighttpd runs, but not where the supervisor looks: it gives up, kills it.
  settings = Settings(scratch_dir, fcgi_app.socket_path)
  elsewhere = ListeningSocket()
  try:
    supervisor = supervise(lighttpd_config.render(settings),
                           settings.state_dir,
                           address=elsewhere.getsockname(), start_timeout=1)
    with pytest.raises(LighttpdError) as info:
      supervisor.start()
    assert "did not answer" in str(info.value)
    assert ProcessesMentioning(settings.state_dir) == []
  finally:
    elsewhere.close()


_DAEMON = """
import os, signal, socket, sys, time
sys.path.insert(0, %(repo)r)
from ganeti.http.backends.fastcgi.lighttpd import (
  supervisor as lighttpd_supervisor)
from ganeti.http.backends.fastcgi.lighttpd.supervisor import LighttpdSupervisor
if %(die_while_starting)r:
  def _Die(pid):
    os.kill(os.getpid(), signal.SIGKILL)
  lighttpd_supervisor._Lifeline = _Die
listener = socket.socket()
listener.bind(("127.0.0.1", %(port)d))
listener.listen(16)
supervisor = LighttpdSupervisor(open(%(config)r).read(), %(state_dir)r,
                                listen_socket=listener)
supervisor.start()
print(supervisor.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("die_while_starting", [False, True],
                         ids=["while serving", "while starting"])
def test_lighttpd_ends_when_the_daemon_dies(scratch_dir, fcgi_app,
                                            listener, die_while_starting):
  """A daemon killed without stop(): its lighttpd must not linger, even if
  it is killed after starting lighttpd and before its lifeline."""
  port = listener.getsockname()[1]
  listener.close()  # the child daemon binds it
  settings = Settings(scratch_dir, fcgi_app.socket_path, port=port,
                      socket_activation=True)
  config = os.path.join(scratch_dir, "daemon.conf")
  with open(config, "w") as handle:
    handle.write(lighttpd_config.render(settings))
  daemon = subprocess.Popen(
    [sys.executable, "-c", _DAEMON % {"repo": REPO, "port": port,
                                      "config": config,
                                      "state_dir": settings.state_dir,
                                      "die_while_starting":
                                      die_while_starting}],
    stdout=subprocess.PIPE)
  try:
    if die_while_starting:
      assert daemon.wait(30) == -signal.SIGKILL
    else:
      pid = int(daemon.stdout.readline())
      assert Request("127.0.0.1", port)[0] == 200
      daemon.kill()
      daemon.wait()
      WaitFor(lambda: not Alive(pid), timeout=5)
    WaitFor(lambda: not ProcessesMentioning(settings.state_dir), timeout=5)
    assert ProcessesMentioning(settings.state_dir) == []
  finally:
    daemon.kill()
    daemon.wait()
    daemon.stdout.close()
    for leftover in ProcessesMentioning(settings.state_dir):
      os.kill(leftover, signal.SIGKILL)


def test_needs_an_address_or_a_socket(scratch_dir):
  with pytest.raises(ValueError):
    LighttpdSupervisor("", scratch_dir)


def test_missing_binary_is_reported(scratch_dir):
  with pytest.raises(LighttpdError) as info:
    LighttpdSupervisor("", scratch_dir, address=("127.0.0.1", 9),
                       lighttpd_binary=os.path.join(scratch_dir,
                                                    "no-lighttpd"))
  assert "no-lighttpd" in str(info.value)


def test_logs_nothing_when_all_is_well(supervise, scratch_dir, fcgi_app,
                                       caplog):
  (supervisor, port) = _Plain(supervise, scratch_dir, fcgi_app)
  supervisor.start()
  Request("127.0.0.1", port)
  supervisor.stop()
  assert [record for record in caplog.records
          if record.levelno >= logging.WARNING] == []
