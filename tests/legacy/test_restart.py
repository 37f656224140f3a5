"""A restart of a daemon started as Ganeti 3.0 starts its daemons, while
it serves a request: Ganeti 3.0 served each connection in a child process,
so a stop returned at once and the request still got its answer."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading

import pytest

from tests.new.daemonized import WAIT
from tests.new.lighttpd_helpers import REPO, Alive, WaitFor


def _StartDaemon(state_dir, env, port=0):
  """Start tests.new.daemonized in C{state_dir}; return its pid and port."""
  starter = subprocess.run([sys.executable, "-m", "tests.new.daemonized",
                            str(state_dir), str(port)], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, universal_newlines=True,
                           timeout=WAIT + 30)
  assert starter.returncode == 0, (starter.stdout,
                                   (state_dir / "daemon.log").read_text())
  info = json.loads((state_dir / "daemon.json").read_text())
  return (info["pid"], info["port"])


def _Get(port, path, results):
  """Append C{(status, body)} of a GET to C{results} (an exception's text
  as status if it fails)."""
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=90)
  try:
    connection.request("GET", path)
    response = connection.getresponse()
    results.append((response.status, json.loads(response.read())))
  except (OSError, http.client.HTTPException) as err:
    results.append((repr(err), None))
  finally:
    connection.close()


@pytest.mark.parametrize("backend,processes", [("legacy", 1), ("fastcgi", 1),
                                               ("fastcgi", 2)])
def test_restart_during_a_request_loses_nothing(tmp_path, backend,
                                                processes):
  """SIGTERM to a daemon (Ganeti 3.0's signature) serving a slow request:
  the daemon exits while the request is still in its handler, in another
  process (a stop returns at once, as with Ganeti 3.0's per-connection
  children); a new daemon starts on the same port and serves; the old
  request then gets its whole answer."""
  env = dict(os.environ, GANETI_HTTP_BACKEND=backend,
             GANETI_HTTP_FASTCGI_PROCESSES=str(processes),
             GANETI_HTTP_BACKEND_CONFIG=str(tmp_path / "none"),
             PYTHONPATH=REPO)
  (old, new) = (tmp_path / "old", tmp_path / "new")
  old.mkdir()
  new.mkdir()
  (old_pid, port) = _StartDaemon(old, env)
  new_pid = None
  slow = []
  client = threading.Thread(target=_Get, args=(port, "/slow", slow))
  try:
    client.start()
    WaitFor((old / "entered").exists, timeout=30)
    os.kill(old_pid, signal.SIGTERM)
    WaitFor(lambda: not Alive(old_pid), timeout=30)
    assert not slow and client.is_alive()  # still in the handler
    (new_pid, new_port) = _StartDaemon(new, env, port)
    assert new_port == port
    fresh = []
    _Get(port, "/", fresh)
    assert fresh[0][0] == 200
    assert fresh[0][1] != int((old / "entered").read_text())
  finally:
    (old / "release").write_text("")
    client.join(60)
    if new_pid is not None:
      os.kill(new_pid, signal.SIGTERM)
      WaitFor(lambda: not Alive(new_pid), timeout=60)
  assert slow and slow[0][0] == 200, slow
