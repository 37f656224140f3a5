"""A restart of a daemon started as Ganeti 3.0 starts its daemons, while
it serves a request: Ganeti 3.0 served each connection in a child process,
so a stop returned at once and the request still got its answer (and its
line in the daemon's log).  And the
SIGTERM that stops it reaches Ganeti 3.0's main loop from any thread."""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import threading

import pytest

from tests.legacy.test_real_ganeti_handlers import ganeti_tree  # pylint: disable=unused-import
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
  # Its line is in the old daemon's log, once, though that daemon had
  # exited: written by the process that served it (legacy) or from the
  # access log of the lighttpd left to finish it (fastcgi), which writes
  # it when it exits, after this answer.
  WaitFor(lambda: _SlowLines(old), timeout=30)
  assert len(_SlowLines(old)) == 1, (old / "daemon.log").read_text()


def _SlowLines(state_dir):
  """The request log's lines for GET /slow in C{state_dir}'s daemon log."""
  return re.findall(r"(?m) 127\.0\.0\.1:[0-9]+ GET /slow HTTP/1\.1 200$",
                    (state_dir / "daemon.log").read_text())


# Ganeti 3.0's own main loop (its users looked up by name, which a test
# machine lacks: skipped) with a server of ours.  After Start() the main
# thread blocks SIGTERM, so the kernel must hand it to one of our threads,
# as it may in a real daemon whenever the main thread has another signal
# pending.
_MAINLOOP_DAEMON = """
import json, signal
from ganeti import daemon, runtime
from ganeti.http import server as http_server

class Handler(http_server.HttpServerHandler):
  def HandleRequest(self, req):
    return "[1]"

runtime.GetEnts = lambda: None
mainloop = daemon.Mainloop()
server = http_server.HttpServer(mainloop, "127.0.0.1", 0, 20, Handler(),
                                daemon_name="test")
server.Start()
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
print(json.dumps(server.server_address[1]), flush=True)
try:
  mainloop.Run()
finally:
  server.Stop()
print("stopped", flush=True)
"""


@pytest.mark.parametrize("backend", ["legacy", "fastcgi"])
def test_sigterm_in_another_thread_stops_ganetis_main_loop(
    ganeti_tree, tmp_path, backend):
  env = dict(os.environ, GANETI_HTTP_BACKEND=backend,
             GANETI_HTTP_BACKEND_CONFIG=str(tmp_path / "none"),
             PYTHONPATH=ganeti_tree)
  with open(str(tmp_path / "stderr"), "w") as stderr:
    daemon = subprocess.Popen([sys.executable, "-c", _MAINLOOP_DAEMON],
                              stdout=subprocess.PIPE, stderr=stderr, env=env,
                              universal_newlines=True, cwd=str(tmp_path))
  try:
    line = daemon.stdout.readline()
    assert line, (tmp_path / "stderr").read_text()
    port = json.loads(line)
    results = []
    _Get(port, "/", results)
    assert results[0][0] == 200
    daemon.send_signal(signal.SIGTERM)
    assert daemon.wait(20) == 0
    assert daemon.stdout.read() == "stopped\n"
  finally:
    if daemon.poll() is None:
      daemon.kill()
      daemon.wait()
    daemon.stdout.close()
