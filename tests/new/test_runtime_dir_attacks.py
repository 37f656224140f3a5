"""A local user against a root daemon's runtime and state directories.

Issue 14 §1: each step of the attack that gave a local user root's code
execution, run as C{nobody} against a daemon running as root, and
issue 10's umask: the runtime directory the daemon makes must let lighttpd
through whatever the umask.  docs/security.md lists them.
"""

import os
import pwd
import shutil
import subprocess
import sys
import tempfile

import pytest

from ganeti.http.backends import selection
from ganeti.http.backends.fastcgi import settings as fastcgi_settings
from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.backends.fastcgi.lighttpd import state_dirs
from ganeti.http.backends.fastcgi.lighttpd import supervisor as supervision
from ganeti.http.system import trusted_dirs
from tests.new.lighttpd_helpers import REPO, FreePort, Request

pytestmark = pytest.mark.skipif(
  os.geteuid() != 0, reason="attacks a root daemon as nobody; CI runs as root")

#: The attacker's interpreter: the system's, which nobody may run.
_PYTHON = "/usr/bin/python3"

#: Exchanges two paths atomically: renameat2(RENAME_EXCHANGE).
_EXCHANGE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), 2):
  error = ctypes.get_errno()
  raise OSError(error, os.strerror(error))
"""


def _BecomeNobody():
  nobody = pwd.getpwnam("nobody")
  os.setgroups([])
  os.setgid(nobody.pw_gid)
  os.setuid(nobody.pw_uid)


def AsNobody(code, *args):
  """Run Python C{code} with C{args} as nobody; fail the test if it fails."""
  result = subprocess.run([_PYTHON, "-c", code] + list(args), cwd="/",
                          preexec_fn=_BecomeNobody, capture_output=True,
                          text=True, timeout=30, check=False)
  assert result.returncode == 0, result.stderr
  return result.stdout


@pytest.fixture
def shared_tmp():
  """A directory like /tmp: root's, mode 1777."""
  path = tempfile.mkdtemp(prefix="ganeti-http-attack-")
  os.chmod(path, 0o1777)
  yield path
  shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def runtime_dir(shared_tmp):
  """A runtime directory as the daemon wants it: root's, mode 0755."""
  path = os.path.join(shared_tmp, "run")
  os.mkdir(path)
  os.chmod(path, 0o755)
  return path


def _Load(tmp_path, text):
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\n" + text)
  return fastcgi_settings.Load(
    "test", {selection.ENV_CONFIG_FILE: str(config)})


def _NobodyMakesIt(shared_tmp):
  AsNobody("import os, sys; os.mkdir(sys.argv[1], 0o755)",
           os.path.join(shared_tmp, "run"))
  return ("run", "run")


def _NobodyMakesItsParent(shared_tmp):
  AsNobody("import os, sys; os.mkdir(sys.argv[1], 0o755)",
           os.path.join(shared_tmp, "evil"))
  return ("evil/run", "evil")


def _WritableByAll(shared_tmp):
  os.mkdir(os.path.join(shared_tmp, "run"))
  os.chmod(os.path.join(shared_tmp, "run"), 0o777)
  return ("run", "run")


def _NobodysSymlink(shared_tmp):
  real = os.path.join(shared_tmp, "real")
  os.mkdir(real)
  os.chmod(real, 0o755)
  AsNobody("import os, sys; os.symlink(sys.argv[1], sys.argv[2])", real,
           os.path.join(shared_tmp, "run"))
  return ("run", "run")


@pytest.mark.parametrize("prepare", [_NobodyMakesIt, _NobodyMakesItsParent,
                                     _WritableByAll, _NobodysSymlink],
                         ids=["made by nobody", "parent made by nobody",
                              "writable by all", "symlink of nobody"])
def test_runtime_dir_another_user_controls_is_refused(tmp_path, shared_tmp,
                                                      prepare):
  """Step 1: a runtime directory set to a path a local user could take
  first (here under a /tmp-like directory) and did take is refused, with
  the path named, before anything is made in it."""
  (relative, culprit) = prepare(shared_tmp)
  path = os.path.join(shared_tmp, relative)
  with pytest.raises(fastcgi_settings.SettingsError) as info:
    _Load(tmp_path, "runtime-dir = %s\n" % path)
  message = str(info.value)
  assert os.path.join(shared_tmp, culprit) in message
  assert "runtime-dir" in message  # where the setting came from
  assert not os.path.isdir(path) or os.listdir(path) == []


def _Supervisor(state_path):
  """A supervisor of lighttpd switching to nobody, state in C{state_path}."""
  port = FreePort()
  settings = lighttpd_config.FrontendSettings(
    bind_address="127.0.0.1", port=port, state_dir=state_path,
    fastcgi_socket=os.path.join(state_path, "fastcgi.sock"),
    username="nobody", groupname="nogroup")
  return supervision.LighttpdSupervisor(
    lighttpd_config.Render(settings), state_path,
    address=("127.0.0.1", port), user="nobody", group="nogroup")


def test_swapped_state_directory_is_not_used(runtime_dir, tmp_path):
  """Step 2: the attacker exchanges the daemon's state directory with its
  own (renameat2), which contains a configuration that runs a command.
  Here the runtime directory is made writable after the daemon checked
  it, as the refused ones of step 1 would be: the daemon must write
  nothing into the attacker's directory and not run lighttpd on it."""
  state_path = state_dirs.Create(runtime_dir)
  supervisor = _Supervisor(state_path)
  marker = str(tmp_path / "ran-as-root")
  try:
    supervisor.Check()
    os.chmod(runtime_dir, 0o777)
    evil = os.path.join(runtime_dir, "evil")
    AsNobody("import os, sys\n"
             "os.mkdir(sys.argv[1], 0o777)\n"
             "with open(sys.argv[1] + '/lighttpd.conf', 'w') as handle:\n"
             "  handle.write('include_shell \"touch %s\"\\n')\n" % marker +
             _EXCHANGE, evil, state_path)
    with pytest.raises(supervision.LighttpdError) as info:
      supervisor.Start()
    assert not os.path.exists(marker)
    assert "replaced" in str(info.value) and state_path in str(info.value)
    assert os.listdir(state_path) == ["lighttpd.conf"]  # the attacker's
    with open(os.path.join(state_path, "lighttpd.conf")) as handle:
      assert handle.read().startswith("include_shell")
  finally:
    supervisor.Stop()


_HOLD_OPEN = """
import os, sys
descriptor = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o666)
os.fchmod(descriptor, 0o666)
print("ready", flush=True)
sys.stdin.readline()
os.pwrite(descriptor, ('include_shell "touch %s"\\n' % sys.argv[2]).encode(), 0)
print("done", flush=True)
"""


def test_config_temporary_held_open_by_another_user_is_not_used(
    runtime_dir, tmp_path):
  """Step 3: the attacker holds open a world-writable C{lighttpd.conf.new}
  (in a directory it could write to: here the state directory made
  writable for it) and writes into it after the daemon wrote its
  configuration; lighttpd, run as root on the configuration, must not
  see that."""
  state_path = state_dirs.Create(runtime_dir)
  supervisor = _Supervisor(state_path)
  marker = str(tmp_path / "ran-as-root")
  holder = None
  try:
    supervisor.Check()
    os.chmod(state_path, 0o777)
    holder = subprocess.Popen(
      [_PYTHON, "-c", _HOLD_OPEN, supervisor.config_path + ".new", marker],
      cwd="/", preexec_fn=_BecomeNobody, stdin=subprocess.PIPE,
      stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "ready\n"
    supervisor.Check()  # writes the configuration again
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.stdout.readline() == "done\n"
    with open(supervisor.config_path) as handle:
      assert "include_shell" not in handle.read()
    subprocess.run([supervision.FindLighttpd(), "-tt", "-f",
                    supervisor.config_path], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, check=False)
    assert not os.path.exists(marker)
  finally:
    if holder is not None:
      holder.kill()
      holder.wait()
      holder.stdin.close()
      holder.stdout.close()
    supervisor.Stop()


@pytest.mark.parametrize("name", ["upload", "empty-docroot",
                                  "lighttpd.conf.new"])
def test_planted_symlink_is_not_followed(runtime_dir, tmp_path, name):
  """Step 4: a symbolic link planted for a name the daemon creates (as
  root, and gives to lighttpd's account) never makes it change, give away
  or write the file or directory the link points to."""
  victim = tmp_path / "victim"
  if name in ("upload", "empty-docroot"):
    victim.mkdir()
  else:
    victim.write_text("precious\n")
  os.chmod(victim, 0o755)
  before = os.stat(victim)
  state_path = state_dirs.Create(runtime_dir)
  supervisor = _Supervisor(state_path)
  try:
    supervisor.Check()
    entry = os.path.join(state_path, name)
    if os.path.isdir(entry):
      shutil.rmtree(entry)
    elif os.path.lexists(entry):
      os.unlink(entry)
    os.chmod(state_path, 0o777)
    AsNobody("import os, sys; os.symlink(sys.argv[1], sys.argv[2])",
             str(victim), entry)
    try:
      supervisor.Start()
    except (supervision.LighttpdError, OSError):
      pass
  finally:
    supervisor.Stop()
  after = os.stat(victim)
  assert (after.st_uid, after.st_gid, after.st_mode) == (
    before.st_uid, before.st_gid, before.st_mode)
  if victim.is_file():
    assert victim.read_text() == "precious\n"


_DAEMON = """
import os, sys
os.umask(0o077)  # as Ganeti's daemonization
sys.path.insert(0, %r)
from ganeti.http import server as http_server
class Handler(http_server.HttpServerHandler):
  def HandleRequest(self, req):
    return "served"
server = http_server.HttpServer("127.0.0.1", 0, Handler(), daemon_name="test")
server.Start()
print(server.server_address[1], flush=True)
sys.stdin.read()
server.Stop()
"""


def test_daemon_under_umask_077_makes_a_runtime_dir_lighttpd_can_use(
    shared_tmp, tmp_path):
  """Issue 10: Ganeti daemonizes with umask 077; the runtime directory the
  root daemon makes must still let lighttpd (another account) reach its
  state directory, and the daemon must serve."""
  runtime = os.path.join(shared_tmp, "run")
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nruntime-dir = %s\nfrontend-user = nobody\n"
                    % runtime)
  daemon = subprocess.Popen(
    [sys.executable, "-c", _DAEMON % REPO], stdin=subprocess.PIPE,
    stdout=subprocess.PIPE, cwd=REPO,
    env=dict(os.environ, GANETI_HTTP_BACKEND="fastcgi",
             GANETI_HTTP_BACKEND_CONFIG=str(config)))
  try:
    port = int(daemon.stdout.readline() or 0)
    assert port, "the daemon did not start"
    assert Request("127.0.0.1", port)[0] == 200
    assert os.stat(runtime).st_mode & 0o7777 == 0o755
  finally:
    daemon.stdin.close()
    daemon.wait(60)
    daemon.stdout.close()


@pytest.fixture
def package_for_nobody():
  """A copy of this project's C{ganeti} package that nobody can read (the
  checkout itself may be in a directory private to root, as CI's is);
  return the directory to put on C{sys.path}."""
  path = tempfile.mkdtemp(prefix="ganeti-http-package-")
  os.chmod(path, 0o755)
  shutil.copytree(os.path.join(REPO, "ganeti"), os.path.join(path, "ganeti"),
                  ignore=shutil.ignore_patterns("__pycache__"))
  yield path
  shutil.rmtree(path, ignore_errors=True)


def test_non_root_daemon_default_runtime_dir(package_for_nobody):
  """Issue 10's RAPI case: a daemon of another user (RAPI runs as
  gnt-rapi) uses /run/ganeti-http/<user>, not /tmp; missing, it is an
  error naming the path and the fix."""
  config = "/nonexistent/http-backend.conf"  # no settings
  load = ("import sys; sys.path.insert(0, %r)\n"
          "from ganeti.http.backends.fastcgi import settings\n"
          "try:\n"
          "  print(settings.Load('rapi', {%r: %r}).runtime_dir)\n"
          "except settings.SettingsError as err:\n"
          "  print(err)\n" % (package_for_nobody, selection.ENV_CONFIG_FILE,
                              str(config)))
  mine = os.path.join(trusted_dirs.ROOT_RUNTIME_DIR, "nobody")
  os.makedirs(trusted_dirs.ROOT_RUNTIME_DIR, exist_ok=True)
  shutil.rmtree(mine, ignore_errors=True)
  message = AsNobody(load)
  assert "runtime directory %s" % mine in message
  assert "install -d -m 0700 -o nobody %s" % mine in message
  subprocess.run(["install", "-d", "-m", "0700", "-o", "nobody", mine],
                 check=True)
  try:
    assert AsNobody(load) == mine + "\n"
  finally:
    shutil.rmtree(mine)
