"""The other deployment: lighttpd as a system service spawning the daemon.

lighttpd starts the application itself (bin-path) with the FastCGI socket
as standard input; ``ganeti.http``'s ``HttpServer`` then serves that
socket, here through ``shims.fastcgi_launcher``, with TLS and client
certificates checked by lighttpd and the digest callback in the backend.
"""

import http.client
import io
import json
import os
import signal
import ssl
import subprocess
import sys

import pytest

from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http import server as http_server
from tests.new.lighttpd_helpers import (REPO, Alive, ProcessesMentioning,
                                        Request, Settings, WaitFor,
                                        scratch_dir, supervise)
from tests.new.test_fastcgi_connection import Exchange, Params, RequestBytes

_ = (scratch_dir, supervise)  # fixtures


class PidHandler(http_server.HttpServerHandler):
  """Answers with its pid, the request it saw and whether a child process
  would be told that lighttpd spawned it."""

  def HandleRequest(self, req):
    child_env = subprocess.check_output(
      [sys.executable, "-c", "import os; print(sorted(k for k in os.environ"
       " if k.startswith('GANETI_HTTP_FASTCGI')))"])
    return json.dumps({"pid": os.getpid(), "path": req.request_path,
                       "body": req.request_body.decode(),
                       "child_env": child_env.decode().strip(),
                       "stdin": os.readlink("/proc/self/fd/0")})


def MakeHandler():
  """The launcher's handler factory."""
  return PidHandler()


def AcceptNodeCertificate(digest):
  """The launcher's verify callback: only the node certificate."""
  return digest == os.environ["EXPECTED_CLIENT_DIGEST"]


def _Get(port, client_cert, path="/hello?x=1"):
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  context.check_hostname = False
  context.verify_mode = ssl.CERT_NONE
  context.load_cert_chain(client_cert.path)
  connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=10,
                                           context=context)
  try:
    connection.request("POST", path, body=b"payload")
    response = connection.getresponse()
    return (response.status, response.read())
  finally:
    connection.close()


def test_lighttpd_spawns_ganeti_http_backends(supervise, scratch_dir, pki):
  marker = os.path.join(scratch_dir, "spawned-app")
  settings = Settings(scratch_dir, marker + ".sock",
                      ssl_cert_path=pki.cluster.path,
                      ssl_key_path=pki.cluster.path, ssl_verify_peer=True)
  command = [sys.executable, "-m", "shims.fastcgi_launcher",
             "tests.new.test_fastcgi_spawned:MakeHandler", "--verify-callback",
             "tests.new.test_fastcgi_spawned:AcceptNodeCertificate"]
  text = lighttpd_config.render_system_config(
    settings, command, max_procs=2,
    environment={"PYTHONPATH": REPO,
                 "EXPECTED_CLIENT_DIGEST": pki.node.digest})
  supervisor = supervise(text, settings.state_dir,
                         address=("127.0.0.1", settings.port))
  supervisor.start()
  (status, raw) = _Get(settings.port, pki.node)
  assert status == 200
  answer = json.loads(raw)
  assert answer["path"] == "/hello?x=1" and answer["body"] == "payload"
  assert answer["pid"] != os.getpid()
  # Daemons it starts are not spawned by lighttpd, nor get its socket.
  assert answer["child_env"] == "[]"
  assert answer["stdin"] == "/dev/null"
  # The digest callback runs in the spawned backend: the cluster
  # certificate passes lighttpd's chain check but not the callback.
  assert _Get(settings.port, pki.cluster)[0] == 403
  assert WaitFor(lambda: len(ProcessesMentioning(
    "tests.new.test_fastcgi_spawned:MakeHandler")) == 2)
  # The spawned backend serves lighttpd, its parent, and no other process.
  try:
    assert Exchange(marker + ".sock-0",
                    RequestBytes(Params("POST", "/"), [])) == []
  except ConnectionError:
    pass  # closed with the request unread: reset, or a broken pipe


class MarkedFile(io.FileIO):
  """A real file that creates C{READ_MARKER} when the backend reads it."""

  def read(self, size=-1):
    open(os.environ["READ_MARKER"], "w").close()
    return io.FileIO.read(self, size)


class FileHandler(http_server.HttpServerHandler):
  """Returns the file named by C{SERVED_FILE}."""

  def HandleRequest(self, req):
    return MarkedFile(os.environ["SERVED_FILE"], "r")


def MakeFileHandler():
  """The launcher's handler factory for L{FileHandler}."""
  return FileHandler()


@pytest.mark.parametrize("listed", [False, True])
def test_spawned_backend_sendfile_only_as_lighttpd_is_configured(
    supervise, scratch_dir, listed):
  """The daemon's settings file lists a sendfile directory; whether the
  spawned daemon hands files to lighttpd depends on lighttpd's own
  configuration only (else lighttpd, not configured for X-Sendfile, would
  send an empty body)."""
  export = os.path.join(scratch_dir, "export")
  os.mkdir(export)
  os.chmod(export, 0o755)
  served = os.path.join(export, "disk.img")
  with open(served, "wb") as handle:
    handle.write(b"disk" * 4096)
  os.chmod(served, 0o644)
  backend_config = os.path.join(scratch_dir, "http-backend.conf")
  with open(backend_config, "w") as handle:
    handle.write("[fastcgi]\nsendfile-dirs = %s\n" % export)
  settings = Settings(scratch_dir, os.path.join(scratch_dir, "files.sock"),
                      sendfile_dirs=(export, ) if listed else ())
  command = [sys.executable, "-m", "shims.fastcgi_launcher",
             "tests.new.test_fastcgi_spawned:MakeFileHandler"]
  text = lighttpd_config.render_system_config(
    settings, command,
    environment={"PYTHONPATH": REPO, "SERVED_FILE": served,
                 "READ_MARKER": os.path.join(scratch_dir, "read"),
                 "GANETI_HTTP_BACKEND_CONFIG": backend_config})
  supervisor = supervise(text, settings.state_dir,
                         address=("127.0.0.1", settings.port))
  supervisor.start()
  (status, _, body) = Request("127.0.0.1", settings.port)
  assert (status, body) == (200, b"disk" * 4096)
  assert os.path.exists(os.path.join(scratch_dir, "read")) == (not listed)


def test_launcher_refuses_to_run_unspawned(monkeypatch):
  from shims import fastcgi_launcher
  monkeypatch.delenv("GANETI_HTTP_FASTCGI_SPAWNED", raising=False)
  with pytest.raises(SystemExit):
    fastcgi_launcher.main(["tests.new.test_fastcgi_spawned:MakeHandler"])


# Stands in for lighttpd: spawns the launcher on a listening socket as its
# standard input, prints the launcher's pid, then waits to be killed.
_SPAWNER = """
import os, socket, subprocess, sys, time
(path, wait_until_serving) = (sys.argv[1], sys.argv[2] == "serving")
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind(path)
listener.listen(8)
env = dict(os.environ, GANETI_HTTP_FASTCGI_SPAWNED="1")
child = subprocess.Popen(sys.argv[3:], stdin=listener, env=env,
                         stderr=subprocess.PIPE if wait_until_serving
                         else None)
if wait_until_serving:
  for line in child.stderr:
    sys.stderr.buffer.write(line)
    if b"Serving FastCGI" in line:
      break
print(child.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("when", ["serving", "starting"])
def test_spawned_backend_exits_when_lighttpd_is_killed(scratch_dir, when):
  """lighttpd stops its backends with SIGTERM, but a lighttpd killed with
  SIGKILL cannot: the backend notices by itself and exits, also when
  lighttpd died before the backend had even started."""
  command = [sys.executable, "-m", "shims.fastcgi_launcher",
             "tests.new.test_fastcgi_spawned:MakeHandler"]
  spawner = subprocess.Popen(
    [sys.executable, "-c", _SPAWNER,
     os.path.join(scratch_dir, "spawner.sock"), when] + command,
    stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=REPO))
  try:
    backend = int(spawner.stdout.readline())
  finally:
    spawner.kill()
    spawner.wait()
    spawner.stdout.close()
  try:
    WaitFor(lambda: not Alive(backend), timeout=15)
  finally:
    if Alive(backend):
      os.kill(backend, signal.SIGKILL)
