"""ganeti-http, the operator's command, run as a subprocess against real
files, a real lighttpd -tt and real servers that publish their status.

Every test points the command at files of its own through Ganeti's
GANETI_ROOTDIR, which the daemons honour too (the INI file, Ganeti's
defaults file, certificates, pid files, status files and lighttpd's error
logs: daemon and command must find them in the same place).
"""

import json
import os
import shutil
import signal
import stat
import subprocess
import sys

import pytest

import ganeti.http as ganeti_http
from ganeti.http.backends import selection
from ganeti.http.backends import status_file
from ganeti.http.backends import daemons
from ganeti.http.backends.fastcgi.lighttpd import error_log
from tests.new.lighttpd_helpers import REPO, WaitFor, scratch_dir  # noqa: F401
from tests.pki import ClusterPki

PACKAGE_CONFFILE = os.path.join(REPO, "shims", "debian", "http-backend.conf")

#: A server for daemon "noded" on a free port, serving until SIGTERM.
_SERVER = r"""
import signal, sys, threading
from ganeti.http import server
class Handler(server.HttpServerHandler):
  def HandleRequest(self, request):
    return "ok"
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
instance = server.HttpServer("127.0.0.1", 0, Handler(), daemon_name="noded")
instance.Start()
print(instance.server_address[1], flush=True)
while not stop.wait(0.1):
  pass
instance.Stop()
"""


class Node(object):
  """The files ganeti-http reads, in a directory of their own."""

  def __init__(self, root):
    self.root = root
    self.config = os.path.join(root, "etc", "ganeti", "http-backend.conf")
    self.defaults = os.path.join(root, "etc", "default", "ganeti")
    self.run_dir = os.path.join(root, "var", "run", "ganeti")
    self.log_dir = os.path.join(root, "var", "log", "ganeti")
    self.certificate = os.path.join(root, "var", "lib", "ganeti",
                                    "server.pem")
    for path in (self.config, self.defaults, self.certificate):
      os.makedirs(os.path.dirname(path), exist_ok=True)
    os.makedirs(self.run_dir)
    os.makedirs(self.log_dir)
    shutil.copyfile(PACKAGE_CONFFILE, self.config)
    self.environ = {
      key: value for (key, value) in os.environ.items()
      if not key.startswith("GANETI_HTTP_")}
    self.environ.update({
      "GANETI_ROOTDIR": root,
      "PYTHONPATH": REPO})
    self.servers = []

  def Run(self, *args, expect=0):
    result = subprocess.run(
      [sys.executable, "-m", "ganeti.http.cli.main"] + list(args),
      env=self.environ, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    assert result.returncode == expect, (result.stdout, result.stderr)
    return result

  def Json(self, *args, expect=0):
    return json.loads(self.Run(*(args + ("--json",)), expect=expect).stdout)

  def Write(self, path, text):
    with open(path, "w") as handle:
      handle.write(text)

  def Read(self, path):
    with open(path) as handle:
      return handle.read()

  def StartServer(self):
    process = subprocess.Popen([sys.executable, "-c", _SERVER],
                               env=self.environ, stdout=subprocess.PIPE,
                               universal_newlines=True)
    self.servers.append(process)
    port = int(process.stdout.readline())
    return (process, port)

  def StopServers(self):
    for process in self.servers:
      if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


@pytest.fixture
def node(scratch_dir):  # noqa: F811 (a fixture)
  instance = Node(scratch_dir)
  yield instance
  instance.StopServers()


def test_help_and_usage_errors(node):
  text = node.Run("--help").stdout
  assert "exit status" in text and "/etc/default/ganeti" in text
  for command in ("status", "set", "unset", "check", "config"):
    assert "usage: ganeti-http %s" % command in node.Run(command,
                                                          "--help").stdout
  assert "not a Ganeti daemon" in node.Run("set", "confd", "fastcgi",
                                           expect=2).stderr
  node.Run("set", "noded", "lighttpd", expect=2)
  node.Run(expect=2)


def test_set_and_unset_change_one_line_only(node):
  original = node.Read(node.config)
  os.chmod(node.config, 0o640)
  out = node.Run("set", "noded", "fastcgi").stdout
  assert "daemon-util stop ganeti-noded && " \
    "/usr/lib/ganeti/daemon-util start ganeti-noded" in out
  edited = node.Read(node.config)
  added = [line for line in edited.splitlines(True)
           if line not in original.splitlines(True)]
  assert added == ["noded = fastcgi\n"]
  assert edited.replace("noded = fastcgi\n", "", 1) == original
  assert stat.S_IMODE(os.stat(node.config).st_mode) == 0o640
  assert selection.ResolveBackend("noded", node.environ)[0] == "fastcgi"
  assert selection.ResolveBackend("rapi", node.environ)[0] == "legacy"

  node.Run("set", "ganeti-noded", "legacy")
  assert node.Read(node.config) == original.replace(
    "default = legacy\n", "default = legacy\nnoded = legacy\n", 1)
  node.Run("unset", "noded")
  assert node.Read(node.config) == original
  assert "was not in" in node.Run("unset", "noded").stdout
  assert [name for name in os.listdir(os.path.dirname(node.config))] == \
    ["http-backend.conf"]  # no temporary file left


def test_set_creates_a_missing_file_and_refuses_a_malformed_one(node):
  os.unlink(node.config)
  node.Run("set", "default", "fastcgi")
  assert node.Read(node.config) == "[backends]\ndefault = fastcgi\n"
  assert stat.S_IMODE(os.stat(node.config).st_mode) == 0o644
  node.Write(node.config, "[backends\nnoded = fastcgi\n")
  assert "Malformed" in node.Run("set", "noded", "legacy",
                                 expect=1).stderr
  assert node.Read(node.config) == "[backends\nnoded = fastcgi\n"


def test_set_warns_when_a_variable_overrides_the_file(node):
  node.Write(node.defaults, 'NODED_ARGS=""\nGANETI_HTTP_BACKEND_NODED=legacy\n')
  out = node.Run("set", "noded", "fastcgi").stdout
  assert "warning: GANETI_HTTP_BACKEND_NODED in %s overrides the file" % \
    node.defaults in out


def test_defaults_file_assignments_reach_a_daemon_started_as_ganeti_does(
    node):
  """daemon-util sources /etc/default/ganeti without exporting: a plain
  assignment there must still select the backend."""
  node.Write(node.defaults, "# Ganeti's defaults\nNODED_ARGS=\"\"\n"
             "GANETI_HTTP_BACKEND_NODED='fastcgi'  # the new backend\n"
             "export GANETI_HTTP_BACKEND=legacy\n")
  choose = ("from ganeti.http.backends import selection;"
            "print(selection.Choose('noded'))")
  result = subprocess.run(
    ["bash", "-c", '. "$1"; exec "$2" -c "$3"', "sh", node.defaults,
     sys.executable, choose], env=node.environ, check=True,
    stdout=subprocess.PIPE, universal_newlines=True)
  assert "backend='fastcgi'" in result.stdout
  assert "GANETI_HTTP_BACKEND_NODED in %s" % node.defaults in result.stdout
  # the daemon's environment wins over the file
  environ = dict(node.environ, GANETI_HTTP_BACKEND_NODED="legacy")
  assert selection.ResolveBackend("noded", environ) == (
    "legacy", "environment variable GANETI_HTTP_BACKEND_NODED")
  status = node.Json("status", "noded")["daemons"][0]
  assert status["configured"]["backend"] == "fastcgi"


def test_defaults_file_value_that_needs_a_shell_is_a_problem(node):
  node.Write(node.defaults, "GANETI_HTTP_BACKEND_NODED=$BACKEND\n")
  problems = node.Json("check", expect=1)["problems"]
  assert len(problems) == 1
  assert "line 1: GANETI_HTTP_BACKEND_NODED must be a plain value" in \
    problems[0]["problem"]


def test_status_of_a_running_fastcgi_server_and_of_its_leftovers(
    node, scratch_dir):  # noqa: F811
  node.Write(node.config, "[backends]\nnoded = fastcgi\n[fastcgi]\n"
             "processes = 2\nruntime-dir = %s\n" % scratch_dir)
  (process, port) = node.StartServer()
  entry = node.Json("status", "noded")["daemons"][0]
  running = entry["running"]
  assert running["backend"] == "fastcgi" and running["pid"] == process.pid
  assert running["address"] == ["127.0.0.1", port] and not running["tls"]
  assert running["source"].startswith("key 'noded' in section [backends]")
  assert entry["configured"]["backend"] == "fastcgi"
  assert entry["restart_needed"] == [] and entry["problems"] == []
  (lighttpd,) = running["lighttpd_pids"]
  with open("/proc/%d/comm" % lighttpd) as handle:
    assert handle.read().strip() == "lighttpd"
  assert len(running["worker_pids"]) == 2
  for pid in running["worker_pids"]:
    with open("/proc/%d/stat" % pid) as handle:
      assert int(handle.read().rsplit(")", 1)[1].split()[1]) == process.pid
  status_path = os.path.join(node.run_dir, "ganeti-http-noded.json")
  assert stat.S_IMODE(os.stat(status_path).st_mode) == 0o644
  WaitFor(lambda: "server started" in node.Read(
    os.path.join(node.log_dir, "lighttpd-noded.log")))

  text = node.Run("status").stdout
  assert "running:    fastcgi" in text and "port %d" % port in text
  node.Run("set", "noded", "legacy")
  entry = node.Json("status", "noded")["daemons"][0]
  assert entry["restart_needed"] == ["it runs fastcgi but is configured for"
                                     " legacy"]
  assert "restart needed: it runs fastcgi but is configured for legacy" in \
    node.Run("status", "noded").stdout

  # killed: the file stays, and is recognised as stale
  process.kill()
  process.wait()
  WaitFor(lambda: not os.path.exists("/proc/%d" % lighttpd))
  entry = node.Json("status", "noded")["daemons"][0]
  assert not entry["running"]["running"]
  assert entry["problems"] == ["%s is stale: its process (pid %d) is gone" %
                               (status_path, process.pid)]


def test_a_stopped_server_removes_its_status_file(node):
  (process, port) = node.StartServer()
  status_path = os.path.join(node.run_dir, "ganeti-http-noded.json")
  with open(status_path) as handle:
    published = json.load(handle)
  assert (published["backend"], published["pid"], published["address"]) == \
    ("legacy", process.pid, ["127.0.0.1", port])
  process.send_signal(signal.SIGTERM)
  process.wait(60)
  assert not os.path.exists(status_path)
  assert node.Json("status", "noded")["daemons"][0]["running"]["running"] \
    is False


def test_files_lie_where_ganetis_do_under_its_root(node):
  """Under GANETI_ROOTDIR, as in Ganeti's virtual clusters."""
  noded = daemons.Find("noded")
  assert os.path.dirname(status_file.StatusPath("noded", node.environ)) == \
    os.path.dirname(daemons.PidFile(noded, node.environ)) == node.run_dir
  assert daemons.CertificatePath(noded, node.environ) == node.certificate
  assert selection.ConfigPath(node.environ) == node.config
  assert selection.DefaultsPath(node.environ) == node.defaults
  assert error_log.LogPath("noded", node.environ) == \
    os.path.join(node.log_dir, "lighttpd-noded.log")


def _Certificate(node):
  pki = ClusterPki(os.path.dirname(node.certificate))
  shutil.copyfile(pki.node.path, node.certificate)
  os.chmod(node.certificate, 0o600)


def test_check_passes_then_reports_each_problem(node, scratch_dir):  # noqa
  _Certificate(node)
  node.Write(node.config, "[fastcgi]\nfrontend-user = www-data\n"
             "runtime-dir = %s\n" % scratch_dir)
  node.Run("set", "noded", "fastcgi")
  assert node.Run("check").stdout == "no problem found\n"
  assert node.Json("check") == {"problems": []}

  config = node.Run("config", "noded").stdout
  assert 'ssl.pemfile = "%s"' % node.certificate in config
  assert "server.port = 1811" in config or ":1811" in config

  # lighttpd refuses the certificate
  good = node.Read(node.certificate)
  node.Write(node.certificate, "not a certificate\n")
  lines = node.Run("check", expect=1).stdout.splitlines()
  assert len(lines) == 1 and lines[0].startswith(
    "noded: lighttpd rejected its configuration"), lines
  node.Write(node.certificate, good)

  # a runtime directory others can write, an unknown frontend account
  os.chmod(scratch_dir, 0o777)
  try:
    lines = node.Run("check", expect=1).stdout.splitlines()
  finally:
    os.chmod(scratch_dir, 0o711)
  # the daemon's own rule (settings.Load), one line naming the directory
  assert len(lines) == 1 and lines[0].startswith(
    "noded: The fastcgi backend's runtime directory %s" % scratch_dir), lines
  assert "%s is writable by other accounts (mode 0777)" % scratch_dir in lines[0]
  node.Write(node.config, node.Read(node.config).replace(
    "frontend-user = www-data", "frontend-user = no-such-user-here"))
  (line,) = node.Run("check", "noded", expect=1).stdout.splitlines()
  assert line.startswith("noded: The fastcgi backend's frontend account"
                         " does not exist")


def test_config_names_the_runtime_directory_of_the_daemons_user(node):
  """RAPI runs as gnt-rapi: by default its private directory is under
  /run/ganeti-http/gnt-rapi, whoever runs ganeti-http (here root)."""
  config = node.Run("config", "rapi").stdout
  state_dir = "/run/ganeti-http/gnt-rapi/ganeti-http-XXXXXXXX"
  assert "# %s is the private directory" % state_dir in config
  assert 'server.pid-file = "%s/lighttpd.pid"' % state_dir in config
  # a runtime-dir setting wins
  node.Write(node.config, "[fastcgi]\nruntime-dir = %s\n" % node.root)
  config = node.Run("config", "rapi").stdout
  state_dir = os.path.join(node.root, "ganeti-http-XXXXXXXX")
  assert "# %s is the private directory" % state_dir in config
  assert 'server.pid-file = "%s/lighttpd.pid"' % state_dir in config


def test_check_reports_file_problems_one_line_each(node):
  node.Write(node.config, "[backends]\nnoded = fast-cgi\nnode = fastcgi\n"
             "[fastcgi:rapid]\n")
  lines = node.Run("check", expect=1).stdout.splitlines()
  assert lines == [
    "%s: key 'noded' in section [backends] is 'fast-cgi', not one of"
    " fastcgi, legacy" % node.config,
    "%s: key 'node' in section [backends] names no daemon that serves HTTP"
    " (known: noded, rapi, default)" % node.config,
    "%s: section [fastcgi:rapid] names no daemon that serves HTTP" %
    node.config]


def test_check_reports_a_missing_certificate_of_noded_only(node):
  lines = node.Run("check", expect=1).stdout.splitlines()
  assert lines == ["noded: its certificate %s does not exist" %
                   node.certificate]


def test_status_file_trusted_only_for_its_pid_and_start_time(node):
  """A status file whose pid runs, but started at another time, is stale;
  one of an older shim asks for a restart."""
  status_path = os.path.join(node.run_dir, "ganeti-http-rapi.json")
  published = dict(status_file.Identity(os.getpid()), backend="legacy",
                   source="built-in default", address=["127.0.0.1", 5080],
                   tls=True, shim_version="0.0.1", processes={},
                   state_dir=None)
  node.Write(status_path, json.dumps(published))
  entry = node.Json("status", "rapi")["daemons"][0]
  assert entry["running"]["pid"] == os.getpid()
  assert entry["restart_needed"] == [
    "it runs ganeti-http-shim 0.0.1, %s is installed" %
    ganeti_http.SHIM_VERSION]
  published["start_time"] -= 1
  node.Write(status_path, json.dumps(published))
  entry = node.Json("status", "rapi")["daemons"][0]
  assert entry["running"]["running"] is False
  assert entry["problems"] == ["%s is stale: its process (pid %d) is gone" %
                               (status_path, os.getpid())]
