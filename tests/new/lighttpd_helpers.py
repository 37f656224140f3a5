"""Fixtures and helpers of the lighttpd tests (config and supervisor).

Every process a test starts is stopped when the test ends, also when it
fails; C{supervise} additionally fails a test that leaves any process
behind whose command line names its state directory.
"""

import grp
import http.client
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

import pytest

from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.backends.fastcgi.lighttpd import (
  supervisor as lighttpd_supervisor)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
  os.path.abspath(__file__))))


def WaitFor(predicate, timeout=10.0, interval=0.05):
  """Poll C{predicate} until it is true; return its value or fail."""
  deadline = time.monotonic() + timeout
  while True:
    value = predicate()
    if value:
      return value
    if time.monotonic() > deadline:
      pytest.fail("Timed out waiting for %s" % predicate)
    time.sleep(interval)


def Alive(pid):
  """Whether C{pid} is a live (not zombie) process."""
  try:
    with open("/proc/%d/stat" % pid) as handle:
      return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
  except OSError:
    return False


def _OtherLiveProcesses(matches):
  """Pids of live processes other than this one for which C{matches(pid)}
  is true; a process that vanishes meanwhile (OSError) does not match."""
  pids = []
  for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) == os.getpid():
      continue
    try:
      found = matches(int(entry))
    except OSError:
      continue
    if found and Alive(int(entry)):
      pids.append(int(entry))
  return pids


def ProcessesUsing(directory):
  """Pids of live processes that name C{directory} on their command line or
  hold a file in it open (a backend lighttpd spawned writes to lighttpd's
  log there)."""
  def _HoldsFileIn(pid):
    fd_dir = "/proc/%d/fd" % pid
    return any(os.readlink(os.path.join(fd_dir, fd)).startswith(
      directory + os.sep) for fd in os.listdir(fd_dir))
  return sorted(set(ProcessesMentioning(directory)) |
                set(_OtherLiveProcesses(_HoldsFileIn)))


def ProcessesMentioning(text):
  """Pids of live processes whose command line contains C{text}."""
  def _Mentions(pid):
    with open("/proc/%d/cmdline" % pid, "rb") as handle:
      return text in handle.read().decode("utf-8", "replace")
  return _OtherLiveProcesses(_Mentions)


def FreePort(host="127.0.0.1"):
  """A TCP port nobody listens on right now."""
  family = socket.AF_INET6 if ":" in host else socket.AF_INET
  with socket.socket(family, socket.SOCK_STREAM) as probe:
    probe.bind((host, 0))
    return probe.getsockname()[1]


def ListeningSocket(host="127.0.0.1"):
  """A bound, listening TCP socket on a free port of C{host}."""
  family = socket.AF_INET6 if ":" in host else socket.AF_INET
  listener = socket.socket(family, socket.SOCK_STREAM)
  listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
  listener.bind((host, 0))
  listener.listen(128)
  return listener


def Request(host, port, method="GET", path="/", body=None, headers=None,
            client_cert=None, tls=False, timeout=10):
  """Send one HTTP/1.1 request; return C{(status, headers, body)}."""
  if tls:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
      context.load_cert_chain(client_cert.path)
    connection = http.client.HTTPSConnection(host, port, timeout=timeout,
                                             context=context)
  else:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
  try:
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    return (response.status, response.headers, response.read())
  finally:
    connection.close()


class Backend(object):
  """The test FastCGI application (L{tests.new.fcgi_app}) as a process."""

  def __init__(self, socket_path):
    self.socket_path = socket_path
    self.slow_marker = socket_path + ".slow"
    self.process = subprocess.Popen(
      [sys.executable, "-m", "tests.new.fcgi_app", socket_path], cwd=REPO)
    WaitFor(self._Listening)

  def _Listening(self):
    assert self.process.poll() is None, "the FastCGI test app died"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
      try:
        probe.connect(self.socket_path)
      except OSError:
        return False
    return True

  def Stop(self):
    """Kill the application (a test double: no need to be gentle)."""
    self.process.kill()
    self.process.wait()


@pytest.fixture
def scratch_dir():
  """A fresh directory other users can pass through (mode 0711).

  Outside pytest's own temporary tree, which only its owner may enter:
  lighttpd switched to another user must reach its error log and the
  backend's socket.  Short, too, for Unix socket paths.
  """
  path = tempfile.mkdtemp(prefix="ganeti-lighttpd-")
  os.chmod(path, 0o711)
  yield path
  shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def fcgi_app(scratch_dir):
  """The test FastCGI application listening in C{scratch_dir}."""
  app = Backend(os.path.join(scratch_dir, "backend.sock"))
  yield app
  app.Stop()


@pytest.fixture
def supervise():
  """Return C{supervise(config_text, state_dir, **kwargs)}.

  It makes a L{lighttpd_supervisor.LighttpdSupervisor} (not started) and
  returns it.  At the end of the test every one is stopped, and the test
  fails if any process still names its state directory.
  """
  made = []

  def _Supervise(config_text, state_dir, **kwargs):
    supervisor = lighttpd_supervisor.LighttpdSupervisor(config_text,
                                                        state_dir, **kwargs)
    made.append((supervisor, state_dir))
    return supervisor

  yield _Supervise
  for (supervisor, _) in made:
    supervisor.stop(timeout=5)
  leftovers = []
  for (_, state_dir) in made:
    # Backends lighttpd spawned itself may take a moment after SIGTERM.
    deadline = time.monotonic() + 3
    while ProcessesUsing(state_dir) and time.monotonic() < deadline:
      time.sleep(0.05)
    for pid in ProcessesUsing(state_dir):
      leftovers.append(pid)
      os.kill(pid, signal.SIGKILL)
  assert not leftovers, "processes left behind: %s" % leftovers


def Settings(scratch_dir, backend_socket, **kwargs):
  """L{lighttpd_config.FrontendSettings} with a state directory in scratch."""
  kwargs.setdefault("bind_address", "127.0.0.1")
  if "port" not in kwargs:
    kwargs["port"] = FreePort(kwargs["bind_address"])
  return lighttpd_config.FrontendSettings(
    fastcgi_socket=backend_socket,
    state_dir=os.path.join(scratch_dir, "state"), **kwargs)


def CanSwitchToNobody():
  """Whether lighttpd can be told to switch to nobody/nogroup here."""
  try:
    pwd.getpwnam("nobody")
    grp.getgrnam("nogroup")
  except KeyError:
    return False
  return os.geteuid() == 0
