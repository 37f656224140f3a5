"""A daemon of its own: a Python script run in a child process, for tests
whose daemon must not share this process (memory locks, malloc arenas).

The script makes its server and hands it to L{ServeUntilStdinCloses},
which prints one JSON line once it serves (its port, say), then serves
until its stdin closes; L{ScriptDaemon} runs such a script.
"""

import contextlib
import http.client
import json
import os
import subprocess
import sys

from tests.new.lighttpd_helpers import REPO


@contextlib.contextmanager
def ScriptDaemon(script, tmp_path, backend="fastcgi", processes=1, args=(),
                 pythonpath=REPO):
  """Run C{script} with C{args} on C{backend} (C{processes} FastCGI
  workers, no backend config file); yield C{(pid, first line)}, the line
  decoded as JSON.  On leaving, stop it and check that it exited with 0.
  """
  env = dict(os.environ, GANETI_HTTP_BACKEND=backend,
             GANETI_HTTP_FASTCGI_PROCESSES=str(processes),
             GANETI_HTTP_BACKEND_CONFIG=str(tmp_path / "none"),
             PYTHONPATH=pythonpath)
  daemon = subprocess.Popen([sys.executable, "-c", script] + list(args),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env=env, cwd=REPO)
  try:
    yield (daemon.pid, json.loads(daemon.stdout.readline()))
  finally:
    daemon.stdin.close()
    assert daemon.wait(60) == 0
    daemon.stdout.close()


def GetJson(port, timeout):
  """The answer to C{GET /} at 127.0.0.1:C{port}, decoded as JSON."""
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
  try:
    connection.request("GET", "/")
    return json.loads(connection.getresponse().read())
  finally:
    connection.close()


def ServeUntilStdinCloses(server, announce=lambda port: port):
  """In the script: start C{server}, print C{announce(its port)} as one
  JSON line, serve until stdin closes, stop."""
  server.Start()
  print(json.dumps(announce(server.server_address[1])), flush=True)
  sys.stdin.read()
  server.Stop()
