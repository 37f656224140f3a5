"""Children the daemon forgets are reaped, as by Ganeti 3.2's server; a
child someone waits for keeps its exit status for them."""

import os
import subprocess
import time

import pytest

from ganeti.http.system import child_reaper
from ganeti.http import server as http_server


class Handler(http_server.HttpServerHandler):
  def HandleRequest(self, req):
    return "ok"


@pytest.fixture
def quick_reaper(monkeypatch):
  """A reaper that gives children half a second instead of ten."""
  monkeypatch.setattr(child_reaper, "GRACE", 0.5)
  monkeypatch.setattr(child_reaper, "INTERVAL", 0.05)


def _ForkExited():
  """A child that exits at once and that nobody waits for."""
  pid = os.fork()
  if pid == 0:
    os._exit(0)  # pylint: disable=protected-access
  return pid


def _Exists(pid):
  return os.path.exists("/proc/%d" % pid)


def _WaitUntil(condition, timeout=10.0):
  deadline = time.monotonic() + timeout
  while not condition():
    assert time.monotonic() < deadline, "timed out"
    time.sleep(0.05)


def test_forgotten_child_is_reaped(serve, quick_reaper):
  serve(Handler())
  forgotten = _ForkExited()
  # A child waited for keeps its status, even when its owner waits long
  # after it exited (here, until a background process it left behind has
  # closed the output being read).
  command = subprocess.run(["sh", "-c", "sleep 1.5 & exit 3"],
                           capture_output=True, check=False)
  assert command.returncode == 3
  _WaitUntil(lambda: not _Exists(forgotten))


def test_reaper_stops_with_the_last_server(serve, quick_reaper):
  running = serve(Handler())
  running.server.Stop()
  forgotten = _ForkExited()
  time.sleep(1.0)  # twice the grace period: nothing takes it now
  assert _Exists(forgotten)
  assert os.waitpid(forgotten, 0)[0] == forgotten


def test_no_reaper_for_ganeti_3_0(backend, monkeypatch, tmp_path,
                                  quick_reaper):
  """Ganeti 3.0's main loop reaps its children itself."""
  monkeypatch.setenv("GANETI_HTTP_BACKEND", backend)
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(tmp_path / "none"))
  server = http_server.HttpServer(object(), "127.0.0.1", 0, 5, Handler(),
                                  daemon_name="test")
  server.Start()
  try:
    forgotten = _ForkExited()
    time.sleep(1.0)
    assert _Exists(forgotten)
    assert os.waitpid(forgotten, 0)[0] == forgotten
  finally:
    server.Stop()


def _HasExited(pid):
  return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG |
                   os.WNOWAIT) is not None


def test_reap_forgotten_waits_out_the_grace_period(monkeypatch):
  """The bookkeeping on its own, with a clock the test moves: every
  forgotten child goes once its grace period is over, all at once; one a
  Popen object owns stays for its owner."""
  monkeypatch.setattr(child_reaper, "GRACE", 10.0)
  forgotten = [_ForkExited() for _ in range(3)]
  owned = subprocess.Popen(["sh", "-c", "exit 3"])
  _WaitUntil(lambda: all(_HasExited(pid) for pid in forgotten + [owned.pid]))
  exited_since = {}
  assert child_reaper.ReapForgotten(exited_since, now=100.0) == []
  assert set(forgotten + [owned.pid]) <= set(exited_since)
  assert child_reaper.ReapForgotten(exited_since, now=109.0) == []
  reaped = child_reaper.ReapForgotten(exited_since, now=110.5)
  assert set(forgotten) <= set(reaped) and owned.pid not in reaped
  assert not any(_Exists(pid) for pid in forgotten)
  assert owned.wait() == 3
