"""shims.lighttpd_config: what it prints is a configuration lighttpd accepts."""

import os
import subprocess
import sys

import pytest

from ganeti.http.backends.fastcgi.lighttpd import (
  supervisor as lighttpd_supervisor)
from tests.new.lighttpd_helpers import REPO


def _Render(*args):
  return subprocess.run([sys.executable, "-m", "shims.lighttpd_config"]
                        + list(args), cwd=REPO, capture_output=True,
                        text=True)


@pytest.mark.parametrize("command", [[], ["--", "/usr/sbin/ganeti-rapi",
                                          "-f"]])
def test_rendered_configuration_passes_lighttpd_check(tmp_path, pki,
                                                      command):
  state_dir = str(tmp_path / "state")
  result = _Render("--port", "5080", "--cert", pki.cluster.path,
                   "--verify-peer", "--socket", str(tmp_path / "app.sock"),
                   "--state-dir", state_dir, *command)
  assert result.returncode == 0, result.stderr
  assert "ssl.verifyclient.activate" in result.stdout
  assert ("bin-path" in result.stdout) == bool(command)
  os.makedirs(os.path.join(state_dir, "upload"))
  os.makedirs(os.path.join(state_dir, "empty-docroot"))
  config = tmp_path / "lighttpd.conf"
  config.write_text(result.stdout)
  check = subprocess.run([lighttpd_supervisor.FindLighttpd(), "-tt", "-f",
                          str(config), "-m",
                          lighttpd_supervisor.DEFAULT_MODULE_DIR],
                         capture_output=True, text=True)
  assert check.returncode == 0, check.stdout + check.stderr


def test_sendfile_dirs_reach_lighttpd_and_the_spawned_daemon(tmp_path):
  export = tmp_path / "export"
  export.mkdir()
  result = _Render("--port", "5080", "--socket", str(tmp_path / "app.sock"),
                   "--state-dir", str(tmp_path / "state"), "--sendfile-dir",
                   str(export), "--", "/usr/sbin/ganeti-noded", "-f")
  assert result.returncode == 0, result.stderr
  assert '"x-sendfile-docroot" => ("%s/")' % export in result.stdout
  assert '"GANETI_HTTP_FASTCGI_SENDFILE_DIRS" => "%s/"' % export in (
    result.stdout)


def test_bad_values_give_a_clear_error(tmp_path):
  result = _Render("--port", "5080", "--bind", "localhost", "--socket",
                   str(tmp_path / "s"), "--state-dir", str(tmp_path))
  assert result.returncode != 0
  assert "bind_address must be an IPv4 or IPv6 literal" in result.stderr
  assert "Traceback" not in result.stderr


def test_write_idle_timeout_for_a_spawned_daemon(tmp_path):
  """A spawned daemon has lighttpd's write idle timeout, set here."""
  arguments = ["--port", "5080", "--socket", str(tmp_path / "app.sock"),
               "--state-dir", str(tmp_path / "state")]
  assert "server.max-write-idle = 360" in _Render(*arguments).stdout
  result = _Render("--write-idle-timeout", "3600", *arguments)
  assert "server.max-write-idle = 3600" in result.stdout
  result = _Render("--write-idle-timeout", "65536", *arguments)
  assert result.returncode != 0
  assert "write_idle_timeout out of range" in result.stderr
