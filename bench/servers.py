"""Bench targets, each a C{python -m bench.serve} child process.

Each server runs in a process of its own, so neither the load generator
nor another server shares its interpreter.  A child stops when its
standard input closes; L{ServerProcess.Stop} closes it and waits.
"""

import dataclasses
import json
import os
import select
import signal
import subprocess
import sys
from typing import Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Seconds a server may take to start, and to stop once told to.
START_TIMEOUT = 60
STOP_TIMEOUT = 60


class ServerError(Exception):
  """A server did not start."""


@dataclasses.dataclass(frozen=True)
class TargetSpec(object):
  """What to serve and how.

  @ivar label: the name in the report
  @ivar kind: "legacy", "fastcgi" or "static"
  @ivar processes: FastCGI backend processes (fastcgi only)
  @ivar signature: how C{HttpServer} is called (legacy, fastcgi): "dev"
      (Ganeti's development branch, threads) or "3.0" (Ganeti 3.0/3.1's
      C{HttpServer(mainloop, ...)}, a forked child per connection)
  """
  label: str
  kind: str
  processes: Optional[int] = None
  signature: str = "dev"

  def Environment(self, base, config_path):
    """The child's environment: the backend flag and its settings."""
    env = dict(base)
    env["GANETI_HTTP_BACKEND_CONFIG"] = config_path
    # The static lighttpd reads the fastcgi backend's settings (frontend
    # account, runtime directory) too.
    env["GANETI_HTTP_BACKEND"] = ("fastcgi" if self.kind == "static"
                                  else self.kind)
    if self.processes is not None:
      env["GANETI_HTTP_FASTCGI_PROCESSES"] = str(self.processes)
    else:
      env.pop("GANETI_HTTP_FASTCGI_PROCESSES", None)
    env["PYTHONPATH"] = REPO
    return env


class ServerProcess(object):
  """One target running in a child process.

  @param spec: a L{TargetSpec}
  @param config_path: the backend flag's INI file (holds the runtime dir)
  @param log_path: where the child's standard error goes
  @param tls_pem: key+certificate for HTTPS, or None for plain HTTP
  @param client_digest: the client certificate digest accepted over HTTPS
  @param extra_args: more arguments of L{bench.serve} (C{--streaming DIR},
      C{--docroot DIR})
  """

  def __init__(self, spec, config_path, log_path, tls_pem=None,
               client_digest=None, extra_args=()):
    self.spec = spec
    self.tls = tls_pem is not None
    self._config_path = config_path
    self._log_path = log_path
    self._tls_pem = tls_pem
    self._client_digest = client_digest
    self._extra_args = list(extra_args)
    self._process = None
    self.address = None
    self.port = None

  @property
  def url_base(self):
    """C{http[s]://127.0.0.1:port}."""
    return "%s://127.0.0.1:%d" % ("https" if self.tls else "http", self.port)

  @property
  def pid(self):
    """The child's pid (FastCGI workers are its children)."""
    return self._process.pid

  def _Command(self):
    command = [sys.executable, "-m", "bench.serve", self.spec.kind,
               "--signature", self.spec.signature]
    if self._tls_pem:
      command.extend(["--tls", self._tls_pem,
                      "--client-digest", self._client_digest])
    return command + self._extra_args

  def Start(self):
    """Start the child and wait until it serves.

    @raise ServerError: it exited or stayed silent
    """
    with open(self._log_path, "ab") as log:
      self._process = subprocess.Popen(
        self._Command(), cwd=REPO, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=log,
        env=self.spec.Environment(os.environ, self._config_path))
    (ready, _, _) = select.select([self._process.stdout], [], [],
                                  START_TIMEOUT)
    line = self._process.stdout.readline() if ready else b""
    if not line:
      self.Stop()
      raise ServerError("%s did not start; see %s" % (self.spec.label,
                                                       self._log_path))
    announced = json.loads(line)
    (self.address, self.port) = (announced["address"], announced["port"])

  def Stop(self):
    """Close the child's standard input and wait for it (SIGKILL late)."""
    if self._process is None:
      return
    self._process.stdin.close()
    try:
      self._process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
      self._process.send_signal(signal.SIGKILL)
      self._process.wait()
    self._process.stdout.close()
    self._process = None
