"""The fastcgi backend's settings: where they come from, and their errors."""

import os

import pytest

from ganeti.http.backends import selection as backend_flag
from ganeti.http.backends.fastcgi import settings as fastcgi_settings


def _Load(tmp_path, text, daemon="noded", **variables):
  path = tmp_path / "http-backend.conf"
  path.write_text("[fastcgi]\nruntime-dir = %s\n%s" % (tmp_path / "run", text))
  environ = {"GANETI_HTTP_BACKEND_CONFIG": str(path)}
  environ.update(variables)
  return fastcgi_settings.Load(daemon, environ)


def test_write_idle_timeout(tmp_path):
  assert _Load(tmp_path, "").write_idle_timeout == 360
  assert _Load(tmp_path, "write-idle-timeout = 7200\n").write_idle_timeout \
    == 7200


def test_daemon_section_and_environment_win(tmp_path):
  text = "processes = 2\n[fastcgi:noded]\nprocesses = 3\n"
  assert _Load(tmp_path, text).processes == 3
  assert _Load(tmp_path, text, daemon="rapi").processes == 2
  assert _Load(tmp_path, text,
               GANETI_HTTP_FASTCGI_PROCESSES="4").processes == 4


@pytest.mark.parametrize("text, variables, where", [
  ("processes = two\n", {}, "key 'processes' in section [fastcgi] of"),
  ("[fastcgi:noded]\nprocesses = 0\n", {},
   "key 'processes' in section [fastcgi:noded] of"),
  ("processes = 2\n", {"GANETI_HTTP_FASTCGI_PROCESSES": "two"},
   "environment variable GANETI_HTTP_FASTCGI_PROCESSES"),
  ("sendfile-dirs = srv/export\n", {},
   "key 'sendfile-dirs' in section [fastcgi] of"),
  ("write-idle-timeout = soon\n", {},
   "key 'write-idle-timeout' in section [fastcgi] of"),
  ("[fastcgi:noded]\nwrite-idle-timeout = 0\n", {},
   "key 'write-idle-timeout' in section [fastcgi:noded] of"),
  ("write-idle-timeout = 86400\n", {},
   "at most 65535, not 86400 (from key 'write-idle-timeout'"),
], ids=["not-a-number", "zero", "environment", "relative-path",
        "idle-not-a-number", "idle-zero", "idle-over-lighttpds-limit"])
def test_errors_name_where_the_value_came_from(tmp_path, text, variables,
                                               where):
  with pytest.raises(backend_flag.BackendFlagError) as error:
    _Load(tmp_path, text, **variables)
  assert where in str(error.value)
  if not variables:
    assert str(tmp_path / "http-backend.conf") in str(error.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="the frontend account is only"
                    " used when the daemon runs as root; CI runs as root")
def test_missing_frontend_account_names_its_key(tmp_path):
  settings = _Load(tmp_path, "frontend-user = no-such-user-here\n")
  with pytest.raises(backend_flag.BackendFlagError) as error:
    settings.FrontendIdentity()
  assert "no-such-user-here" in str(error.value)
  assert "key 'frontend-user' in section [fastcgi] of" in str(error.value)


def test_sendfile_dirs_are_resolved(tmp_path):
  (tmp_path / "export").mkdir()
  os.symlink(str(tmp_path / "export"), str(tmp_path / "link"))
  settings = _Load(tmp_path, "sendfile-dirs = %s , %s\n" %
                   (tmp_path / "link", tmp_path / "export"))
  assert settings.sendfile_dirs == (str(tmp_path / "export"), ) * 2


def test_spawned_daemon_takes_sendfile_dirs_from_lighttpd(tmp_path):
  """Not from its own file: lighttpd's configuration decides."""
  settings = _Load(tmp_path, "sendfile-dirs = /srv/mine\n",
                   GANETI_HTTP_FASTCGI_SPAWNED="1",
                   GANETI_HTTP_FASTCGI_SENDFILE_DIRS="/srv/lighttpds/")
  assert settings.sendfile_dirs == ("/srv/lighttpds", )
  unset = _Load(tmp_path, "sendfile-dirs = /srv/mine\n",
                GANETI_HTTP_FASTCGI_SPAWNED="1")
  assert unset.sendfile_dirs == ()
