"""The fastcgi backend started as Ganeti 3.0 starts its daemons: forked
worker processes must not keep the daemonization pipe open (the starting
parent, C{daemon-util start}, waits for its end-of-file)."""

import http.client
import json
import os
import signal
import subprocess
import sys
import threading

from tests.new.daemonized import WAIT
from tests.new.lighttpd_helpers import REPO, Alive, WaitFor


def _Children(pid):
  with open("/proc/%d/task/%d/children" % (pid, pid)) as handle:
    return [int(child) for child in handle.read().split()]


def test_start_returns_with_worker_processes(tmp_path):
  env = dict(os.environ, GANETI_HTTP_BACKEND="fastcgi",
             GANETI_HTTP_FASTCGI_PROCESSES="2",
             GANETI_HTTP_BACKEND_CONFIG=str(tmp_path / "none"),
             PYTHONPATH=REPO)
  starter = subprocess.run([sys.executable, "-m", "tests.new.daemonized",
                            str(tmp_path)], cwd=REPO, env=env,
                           stdout=subprocess.PIPE, universal_newlines=True,
                           timeout=WAIT + 30)
  info = json.loads((tmp_path / "daemon.json").read_text())
  try:
    workers = [pid for pid in _Children(info["pid"])
               if "lighttpd" not in open("/proc/%d/cmdline" % pid).read()
               and "/bin/sh" not in open("/proc/%d/cmdline" % pid).read()]
    assert len(workers) == 2, workers
    assert starter.returncode == 0, (starter.stdout,
                                     (tmp_path / "daemon.log").read_text())
  finally:
    os.kill(info["pid"], signal.SIGTERM)
    WaitFor(lambda: not Alive(info["pid"]), timeout=60)


def test_a_forked_child_keeps_only_what_it_needs(tmp_path):
  """Pipes and sockets go (as /dev/null, their numbers stay taken); the
  kept socket, the log file and 0-2 stay."""
  import logging
  import socket
  from ganeti.http.system import descriptors
  (rpipe, wpipe) = os.pipe()
  (kept, other) = socket.socketpair()
  log = logging.FileHandler(str(tmp_path / "log"))
  logging.getLogger("test-descriptors").addHandler(log)
  try:
    pid = os.fork()
    if pid == 0:
      status = 1
      try:
        descriptors.ReleaseInherited([kept.fileno()])
        released = os.readlink("/proc/self/fd/%d" % wpipe) == os.devnull
        kept.sendall(b"kept")
        logging.getLogger("test-descriptors").error("logged")
        status = 0 if released else 2
      finally:
        os._exit(status)  # pylint: disable=protected-access
    assert os.waitpid(pid, 0)[1] == 0
    assert other.recv(4) == b"kept"
    log.flush()
    assert (tmp_path / "log").read_text() == "logged\n"
  finally:
    logging.getLogger("test-descriptors").removeHandler(log)
    log.close()
    os.close(rpipe)
    kept.close()
    other.close()


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


def test_restart_during_a_request_loses_nothing(tmp_path):
  """SIGTERM to a daemon whose worker serves a slow request: the daemon
  exits while the request is still in its handler (a stop returns at once,
  as with Ganeti 3.0's per-connection children); a new daemon starts on
  the same port and serves; the old request then gets its whole answer."""
  env = dict(os.environ, GANETI_HTTP_BACKEND="fastcgi",
             GANETI_HTTP_FASTCGI_PROCESSES="2",
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
