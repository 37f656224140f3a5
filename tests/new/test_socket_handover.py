"""The listening socket passed on across a restart
(L{ganeti.http.system.listening_socket_handover}).

Daemons here are real processes started as Ganeti 3.0 starts them
(L{tests.new.daemonized}, named C{noded}); a restart is what
C{daemon-util restart} does: SIGTERM, wait for the daemon to exit, start
a new one.  Every keeper a test leaves is ended by removing its name.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from ganeti.http.system import listening_socket_handover as handover
from tests.new.daemonized import WAIT
from tests.new.lighttpd_helpers import REPO, Alive, FreePort, WaitFor
from tests.raw_http import ReadUntilClosed

#: Seconds the prober goes on after the restarted daemon is up.
_PROBE_AFTER = 1.0


def _Keepers(directory):
  """Pids of the live processes that hold the handover directory open."""
  pids = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) == os.getpid():
      continue
    try:
      fd_dir = "/proc/%s/fd" % entry
      if any(os.readlink(os.path.join(fd_dir, fd)) == directory
             for fd in os.listdir(fd_dir)) and Alive(int(entry)):
        pids.append(int(entry))
    except OSError:
      continue
  return pids


@pytest.fixture
def handover_dir():
  """A handover directory (mode 0700, root's); its keepers end with the
  test."""
  directory = tempfile.mkdtemp(prefix="handover-test-", dir="/tmp")
  try:
    yield directory
  finally:
    for name in os.listdir(directory):
      os.unlink(os.path.join(directory, name))
    WaitFor(lambda: not _Keepers(directory), timeout=5)
    os.rmdir(directory)


def _PortInUse(port):
  with socket.socket() as probe:
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      probe.bind(("127.0.0.1", port))
    except OSError:
      return True
  return False


class _Daemons(object):
  """Starts and restarts C{noded}-named daemons on one port; stops the
  last one at the end."""

  def __init__(self, state_dir, env, port):
    self._state_dir = state_dir
    self._env = env
    self.port = port
    self.pid = None

  def Start(self, **env):
    """Start a daemon (C{env}: variables to set for it); it writes its pid
    once it serves."""
    info_path = os.path.join(self._state_dir, "daemon.json")
    if os.path.exists(info_path):
      os.unlink(info_path)
    starter = subprocess.run(
      [sys.executable, "-m", "tests.new.daemonized", self._state_dir,
       str(self.port), "noded"], cwd=REPO, env=dict(self._env, **env),
      stdout=subprocess.PIPE, universal_newlines=True, timeout=WAIT + 30)
    assert starter.returncode == 0, (starter.stdout, self.Log())
    if os.path.exists(info_path):
      with open(info_path) as info:
        self.pid = json.load(info)["pid"]

  def Stop(self):
    """SIGTERM, then wait for the daemon to exit (start-stop-daemon's
    stop); return how long that took."""
    started = time.monotonic()
    os.kill(self.pid, signal.SIGTERM)
    WaitFor(lambda: not Alive(self.pid), timeout=60, interval=0.01)
    return time.monotonic() - started

  def Log(self):
    with open(os.path.join(self._state_dir, "daemon.log")) as log:
      return log.read()


@pytest.fixture
def daemons(tmp_path, handover_dir):
  """Make L{_Daemons} with C{daemons(backend)}; stopped at the end."""
  made = []

  def _Make(backend, port=None):
    env = dict(os.environ, GANETI_HTTP_BACKEND=backend,
               GANETI_HTTP_BACKEND_CONFIG=str(tmp_path / "none"),
               GANETI_HTTP_HANDOVER_DIR=handover_dir, PYTHONPATH=REPO)
    state_dir = tmp_path / ("daemon-%d" % len(made))
    state_dir.mkdir()
    made.append(_Daemons(str(state_dir), env, port or FreePort()))
    return made[-1]

  yield _Make
  for each in made:
    if each.pid is not None and Alive(each.pid):
      each.Stop()


class _Prober(object):
  """Connects again and again, one request each; counts what happened."""

  def __init__(self, port):
    self._port = port
    self._stop = threading.Event()
    self.refused = 0
    self.failed = []
    self.answered_at = []  # time.monotonic() of each answer
    self.longest_wait = 0.0
    self._thread = threading.Thread(target=self._Run, daemon=True)
    self._thread.start()

  def _Run(self):
    while not self._stop.is_set():
      started = time.monotonic()
      try:
        with socket.create_connection(("127.0.0.1", self._port),
                                      timeout=30) as connection:
          connection.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n"
                             b"Connection: close\r\n\r\n")
          answer = ReadUntilClosed(connection)
      except ConnectionRefusedError:
        self.refused += 1
        time.sleep(0.002)
        continue
      except OSError as err:
        self.failed.append(repr(err))
        continue
      self.longest_wait = max(self.longest_wait, time.monotonic() - started)
      (head, _, body) = answer.partition(b"\r\n\r\n")
      if not head.startswith(b"HTTP/1.1 200"):
        self.failed.append(head.decode("latin-1"))
        continue
      int(body)  # the answering process's pid
      self.answered_at.append(time.monotonic())

  def AnsweredSince(self, moment):
    return len([at for at in self.answered_at if at > moment])

  def Finish(self):
    self._stop.set()
    self._thread.join(60)


@pytest.mark.parametrize("backend", ["legacy", "fastcgi"])
def test_a_restart_refuses_no_connection(daemons, backend):
  noded = daemons(backend)
  noded.Start()
  prober = _Prober(noded.port)
  try:
    WaitFor(lambda: prober.answered_at)
    stop_took = noded.Stop()
    noded.Start()
    restarted = time.monotonic()
    WaitFor(lambda: prober.AnsweredSince(restarted), timeout=30)
    time.sleep(_PROBE_AFTER)
  finally:
    prober.Finish()
  print("%s: stop %.2f s, longest wait of a connection %.2f s, %d answers"
        % (backend, stop_took, prober.longest_wait, len(prober.answered_at)))
  assert (prober.refused, prober.failed) == (0, []), noded.Log()
  assert "Took over the listening socket on 127.0.0.1 port %d" % noded.port \
    in noded.Log()


def test_a_failed_start_leaves_the_socket_to_the_next(daemons, tmp_path):
  """A fastcgi daemon that takes the socket over and then fails to start
  (no frontend account) passes it on again: the next start (here a
  rollback to legacy) takes it over, and no connection is refused."""
  noded = daemons("fastcgi")
  noded.Start()
  prober = _Prober(noded.port)
  try:
    WaitFor(lambda: prober.answered_at)
    noded.Stop()
    failing = tmp_path / "no-account.conf"
    failing.write_text("[fastcgi]\nfrontend-user = no-such-account\n")
    noded.Start(GANETI_HTTP_BACKEND_CONFIG=str(failing))
    log = noded.Log()
    assert "no-such-account" in log and "daemon failed" in log, log
    noded.Start(GANETI_HTTP_BACKEND="legacy")
    restarted = time.monotonic()
    WaitFor(lambda: prober.AnsweredSince(restarted), timeout=30)
  finally:
    prober.Finish()
  assert (prober.refused, prober.failed) == (0, []), noded.Log()
  assert noded.Log().count("Took over the listening socket") == 2


def test_a_socket_kept_for_another_port_is_not_taken(daemons, handover_dir):
  """A keeper named for the daemon's port whose socket is bound to another
  one: the daemon closes that socket (the keeper is gone, the other port
  free) and binds its own."""
  noded = daemons("legacy")
  other = socket.socket()
  other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  other.bind(("127.0.0.1", 0))
  other.listen(8)
  other_port = other.getsockname()[1]
  handover.ListeningSocket(socket.AF_INET, "127.0.0.1", noded.port,
                           handover=("noded", handover_dir)).PassOn(other)
  other.close()
  assert _PortInUse(other_port)  # the keeper holds it
  noded.Start()
  log = noded.Log()
  assert "is not a listening socket on 127.0.0.1 port %d; closed it" % (
    noded.port) in log, log
  assert "Bound the listening socket on 127.0.0.1 port %d" % noded.port in log
  assert not _PortInUse(other_port)
  assert os.listdir(handover_dir) == []


def _Kept(handover_dir, port):
  """A keeper holding a listening socket on C{port} (the test's copy
  closed)."""
  listening = handover.ListeningSocket(socket.AF_INET, "127.0.0.1", port,
                                       handover=("noded", handover_dir))
  sock = listening.Open()
  listening.PassOn(sock)
  sock.close()
  assert _PortInUse(port)
  return listening


_ASK_AS_ANOTHER_USER = r"""
import socket, sys
asker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
asker.settimeout(10)
asker.connect(sys.argv[1])
(_, descriptors, _, _) = socket.recv_fds(asker, 1, 1)
print(len(descriptors))
"""


def test_a_peer_of_another_user_gets_nothing(handover_dir):
  """Even with the directory and the name open to everyone (the package
  makes them private), the keeper gives the socket only to its own user."""
  port = FreePort()
  listening = _Kept(handover_dir, port)
  (name, ) = os.listdir(handover_dir)
  os.chmod(handover_dir, 0o711)
  os.chmod(os.path.join(handover_dir, name), 0o666)
  asked = subprocess.run(
    ["python3", "-c", _ASK_AS_ANOTHER_USER, os.path.join(handover_dir, name)],
    user="nobody", group="nogroup", stdout=subprocess.PIPE,
    stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
  assert (asked.returncode, asked.stdout) == (0, "0\n"), asked.stderr
  os.chmod(handover_dir, 0o700)
  taken = listening.Open()  # this user still gets it
  try:
    assert taken.getsockname()[1] == port
    assert taken.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
  finally:
    taken.close()


def test_the_keeper_lets_go_when_its_name_is_removed(handover_dir):
  port = FreePort()
  _Kept(handover_dir, port)
  for name in os.listdir(handover_dir):
    os.unlink(os.path.join(handover_dir, name))
  WaitFor(lambda: not _PortInUse(port), timeout=2)
  WaitFor(lambda: not _Keepers(handover_dir), timeout=2)


def test_the_keeper_lets_go_after_its_time(handover_dir, monkeypatch):
  monkeypatch.setattr(handover, "KEEP_FOR", 1.0)  # the forked keeper's
  port = FreePort()
  _Kept(handover_dir, port)
  time.sleep(0.5)
  assert _PortInUse(port)
  WaitFor(lambda: not _PortInUse(port), timeout=3)
  assert os.listdir(handover_dir) == []
