"""The backend flag: precedence of its five places, and its errors."""

import os
import subprocess
import sys

import pytest

from ganeti.http.backends import selection as backend_flag
from ganeti.http.backends.selection import BackendFlagError, ResolveBackend


def _Environ(tmp_path, file_text=None, **variables):
  """An environment whose flag file is C{file_text} (None: no file)."""
  path = tmp_path / "http-backend.conf"
  if file_text is not None:
    path.write_text(file_text)
  environ = {"GANETI_HTTP_BACKEND_CONFIG": str(path)}
  environ.update(variables)
  return (environ, str(path))


def test_nothing_set_is_legacy(tmp_path):
  (environ, _) = _Environ(tmp_path)
  assert ResolveBackend("noded", environ) == ("legacy", "built-in default")


def test_each_level_beats_the_ones_below(tmp_path):
  full_file = "[backends]\nnoded = fastcgi\ndefault = legacy\n"
  (environ, path) = _Environ(
    tmp_path, full_file, GANETI_HTTP_BACKEND_NODED="legacy",
    GANETI_HTTP_BACKEND="fastcgi")
  assert ResolveBackend("noded", environ) == (
    "legacy", "environment variable GANETI_HTTP_BACKEND_NODED")

  del environ["GANETI_HTTP_BACKEND_NODED"]
  assert ResolveBackend("noded", environ) == (
    "fastcgi", "key 'noded' in section [backends] of %s" % path)

  (environ, path) = _Environ(tmp_path, "[backends]\ndefault = fastcgi\n",
                             GANETI_HTTP_BACKEND="legacy")
  assert ResolveBackend("noded", environ) == (
    "legacy", "environment variable GANETI_HTTP_BACKEND")

  del environ["GANETI_HTTP_BACKEND"]
  assert ResolveBackend("noded", environ) == (
    "fastcgi", "key 'default' in section [backends] of %s" % path)


def test_other_daemons_keys_do_not_apply(tmp_path):
  (environ, _) = _Environ(tmp_path, "[backends]\nrapi = fastcgi\n",
                          GANETI_HTTP_BACKEND_RAPI="fastcgi")
  assert ResolveBackend("noded", environ) == ("legacy", "built-in default")


def test_daemon_variable_name():
  assert backend_flag.DaemonVariable("noded") == "GANETI_HTTP_BACKEND_NODED"
  assert (backend_flag.DaemonVariable("my-daemon") ==
          "GANETI_HTTP_BACKEND_MY_DAEMON")


def test_dashed_daemon_name(tmp_path):
  (environ, _) = _Environ(tmp_path, "[backends]\nmy-daemon = fastcgi\n")
  assert ResolveBackend("my-daemon", environ)[0] == "fastcgi"
  environ["GANETI_HTTP_BACKEND_MY_DAEMON"] = "legacy"
  assert ResolveBackend("my-daemon", environ)[0] == "legacy"


def test_values_are_case_and_space_insensitive(tmp_path):
  (environ, _) = _Environ(tmp_path, "[backends]\nNODED =  FastCGI \n")
  assert ResolveBackend("noded", environ)[0] == "fastcgi"
  (environ, _) = _Environ(tmp_path / "elsewhere",
                          GANETI_HTTP_BACKEND=" LEGACY\n")
  assert ResolveBackend("noded", environ)[0] == "legacy"


def test_comments_after_values(tmp_path):
  text = ("[backends]\nnoded = fastcgi   ; migrated first\n"
          "[fastcgi]\nprocesses = 2  # two workers\n"
          "sendfile-dirs = /srv/export ; files lighttpd sends\n")
  (environ, path) = _Environ(tmp_path, text)
  assert ResolveBackend("noded", environ)[0] == "fastcgi"
  assert backend_flag.ReadSection(path, "fastcgi") == {
    "processes": "2", "sendfile-dirs": "/srv/export"}


def test_empty_values_count_as_unset(tmp_path):
  (environ, path) = _Environ(tmp_path, "[backends]\nnoded =\n",
                             GANETI_HTTP_BACKEND_NODED="  ",
                             GANETI_HTTP_BACKEND="fastcgi")
  assert ResolveBackend("noded", environ) == (
    "fastcgi", "environment variable GANETI_HTTP_BACKEND")


def test_file_without_section_is_empty(tmp_path):
  (environ, _) = _Environ(tmp_path, "[other]\nnoded = fastcgi\n")
  assert ResolveBackend("noded", environ) == ("legacy", "built-in default")


def test_default_file_paths():
  assert backend_flag.DEFAULT_CONFIG_FILE == "/etc/ganeti/http-backend.conf"
  assert backend_flag.ConfigPath({}) == "/etc/ganeti/http-backend.conf"
  assert backend_flag.DEFAULTS_FILE == "/etc/default/ganeti"
  assert backend_flag.DefaultsPath({}) == "/etc/default/ganeti"


def test_files_lie_under_ganetis_root_directory(tmp_path):
  """Under C{$GANETI_ROOTDIR} (Ganeti's virtual clusters), as Ganeti 3.0's
  own C{/etc/ganeti} and C{/etc/default/ganeti} do."""
  environ = {"GANETI_ROOTDIR": str(tmp_path)}
  assert ResolveBackend("noded", environ) == ("legacy", "built-in default")
  config = tmp_path / "etc" / "ganeti" / "http-backend.conf"
  config.parent.mkdir(parents=True)
  config.write_text("[backends]\nnoded = fastcgi\n")
  assert ResolveBackend("noded", environ) == (
    "fastcgi", "key 'noded' in section [backends] of %s" % config)
  defaults = tmp_path / "etc" / "default" / "ganeti"
  defaults.parent.mkdir(parents=True)
  defaults.write_text("GANETI_HTTP_BACKEND_NODED=legacy\n")
  assert ResolveBackend("noded", environ) == (
    "legacy", "GANETI_HTTP_BACKEND_NODED in %s" % defaults)


def test_reads_the_process_environment_by_default(monkeypatch, tmp_path):
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG", str(tmp_path / "absent"))
  monkeypatch.setenv("GANETI_HTTP_BACKEND_TESTD", "fastcgi")
  assert ResolveBackend("testd")[0] == "fastcgi"


@pytest.mark.parametrize("variable", ["GANETI_HTTP_BACKEND_NODED",
                                      "GANETI_HTTP_BACKEND"])
def test_unknown_value_in_environment_names_it(tmp_path, variable):
  (environ, _) = _Environ(tmp_path, **{variable: "nginx"})
  with pytest.raises(BackendFlagError) as info:
    ResolveBackend("noded", environ)
  message = str(info.value)
  assert "'nginx'" in message
  assert "environment variable %s" % variable in message


@pytest.mark.parametrize("key", ["noded", "default"])
def test_unknown_value_in_file_names_it(tmp_path, key):
  (environ, path) = _Environ(tmp_path, "[backends]\n%s = uwsgi\n" % key)
  with pytest.raises(BackendFlagError) as info:
    ResolveBackend("noded", environ)
  message = str(info.value)
  assert "'uwsgi'" in message
  assert "key %r in section [backends] of %s" % (key, path) in message


def test_flag_error_is_a_value_error():
  assert issubclass(BackendFlagError, ValueError)


@pytest.mark.parametrize("text", [
  "noded = fastcgi\n",                             # no section header
  "[backends]\nnoded = fastcgi\nnoded = legacy\n",  # duplicate key
  "[backends]\nthis line has no separator\n",
  ])
def test_malformed_file_is_an_error(tmp_path, text):
  (environ, path) = _Environ(tmp_path, text)
  with pytest.raises(BackendFlagError) as info:
    ResolveBackend("noded", environ)
  assert "Malformed" in str(info.value)
  assert path in str(info.value)


def test_unreadable_file_is_an_error(tmp_path):
  (environ, path) = _Environ(tmp_path)
  os.mkdir(path)  # exists, but cannot be read as a file
  with pytest.raises(BackendFlagError) as info:
    ResolveBackend("noded", environ)
  assert "Cannot read" in str(info.value)
  assert path in str(info.value)


def test_file_is_not_read_when_the_daemon_variable_decides(tmp_path):
  (environ, _) = _Environ(tmp_path, "not an ini file",
                          GANETI_HTTP_BACKEND_NODED="fastcgi")
  assert ResolveBackend("noded", environ)[0] == "fastcgi"


def test_daemon_name_is_required():
  with pytest.raises(ValueError):
    ResolveBackend("", {})


@pytest.mark.parametrize(("program", "name"), [
  ("/usr/sbin/ganeti-noded", "noded"),
  ("ganeti-rapi.py", "rapi"),
  ("/opt/bin/confd.py", "confd"),
  ("mond", "mond"),
  ("/usr/lib/ganeti/daemons/ganeti-wconfd", "wconfd"),
  ])
def test_default_daemon_name(program, name):
  assert backend_flag.DefaultDaemonName(program) == name


def test_default_daemon_name_uses_argv(monkeypatch):
  monkeypatch.setattr("sys.argv", ["/usr/sbin/ganeti-luxid", "--foo"])
  assert backend_flag.DefaultDaemonName() == "luxid"


def test_constants():
  assert backend_flag.BACKEND_LEGACY == "legacy"
  assert backend_flag.BACKEND_FASTCGI == "fastcgi"


# Run in a fresh interpreter: prints the flup and fastcgi modules loaded
# after serving on the legacy backend, then those loaded once the fastcgi
# backend's server class is asked for (which shows the check sees them).
_LEGACY_IMPORTS_SCRIPT = r"""
import sys
from ganeti.http import backends
from ganeti.http import server

def Loaded():
  return sorted(name for name in sys.modules
                if name.split(".")[0] == "flup" or "fastcgi" in name)

srv = server.HttpServer("127.0.0.1", 0, server.HttpServerHandler(),
                        daemon_name="noded")
srv.server_close()
print(srv.backend, *Loaded())
backends.ServerClass(backends.FASTCGI)
print(*Loaded())
"""


def test_legacy_backend_imports_neither_flup_nor_fastcgi(tmp_path):
  (flag_environ, _) = _Environ(tmp_path, GANETI_HTTP_BACKEND="legacy")
  environ = {name: value for (name, value) in os.environ.items()
             if not name.startswith("GANETI_HTTP_")}
  environ.update(flag_environ)
  top_dir = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
  result = subprocess.run([sys.executable, "-c", _LEGACY_IMPORTS_SCRIPT],
                          env=environ, cwd=top_dir, capture_output=True,
                          text=True, timeout=60, check=False)
  assert result.returncode == 0, result.stderr
  (legacy_line, fastcgi_line) = result.stdout.splitlines()
  assert legacy_line.split() == ["legacy"]
  assert "flup.server.fcgi_base" in fastcgi_line.split()
  assert "ganeti.http.backends.fastcgi.server" in fastcgi_line.split()
