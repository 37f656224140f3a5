"""Rendering lighttpd configurations: every variant passes the real
C{lighttpd -tt} without a warning, and no value can inject configuration."""

import os
import sys

import pytest

from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.backends.fastcgi.lighttpd.config import FrontendSettings
from tests.new.lighttpd_helpers import (REPO, CanSwitchToNobody, FreePort,
                                        ProcessesMentioning, Request,
                                        Settings, WaitFor, fcgi_app,
                                        scratch_dir, supervise)

_ = (fcgi_app, scratch_dir, supervise)  # fixtures



def _Check(supervise, settings, text=None):
  """Have the real lighttpd check C{text} (default: Render(settings))."""
  if text is None:
    text = lighttpd_config.Render(settings)
  supervisor = supervise(text, settings.state_dir,
                         address=(settings.bind_address, settings.port))
  assert supervisor.Check() == ""
  return text


def _Directives(text):
  """The configuration's non-comment lines."""
  return [line for line in text.splitlines() if not line.startswith("#")]


def test_plain(supervise, scratch_dir):
  settings = Settings(scratch_dir, "/run/ganeti/noded.sock")
  text = _Check(supervise, settings)
  directives = _Directives(text)
  assert 'server.modules = ("mod_fastcgi")' in directives
  assert "server.stream-response-body = 2" in directives
  assert "server.chunkqueue-chunk-sz = 65536" in directives
  assert "server.stream-request-body = 0" in directives
  assert 'server.compat-module-load = "disable"' in directives
  assert 'server.bind = "127.0.0.1"' in directives
  assert "server.port = %d" % settings.port in directives
  assert ('server.document-root = "%s"' %
          settings.layout.document_root) in directives
  # lighttpd's error log is its standard error, read by the daemon.
  assert not [line for line in directives if "server.errorlog" in line]
  assert '"check-local" => "disable"' in text
  assert '"fix-root-scriptname" => "enable"' in text
  assert '"socket" => "/run/ganeti/noded.sock"' in text
  for absent in ("bin-path", "ssl.", "accesslog", "server.username",
                 "server.max-request-size", "systemd-socket-activation"):
    assert absent not in text


def test_tls(supervise, scratch_dir, pki):
  settings = Settings(scratch_dir, "/run/ganeti/noded.sock",
                      ssl_cert_path=pki.cluster.path,
                      ssl_key_path=pki.cluster.path)
  directives = _Directives(_Check(supervise, settings))
  assert 'server.modules = ("mod_openssl", "mod_fastcgi")' in directives
  assert 'ssl.engine = "enable"' in directives
  assert 'ssl.pemfile = "%s"' % pki.cluster.path in directives
  assert 'ssl.privkey = "%s"' % pki.cluster.path in directives
  assert ('ssl.openssl.ssl-conf-cmd = ("MinProtocol" => "TLSv1.2")'
          in directives)
  text = "\n".join(directives)
  for removed in ("ssl.use-sslv2", "ssl.use-sslv3", "ssl.cipher-list",
                  "ssl.honor-cipher-order", "ssl.verifyclient"):
    assert removed not in text


def test_tls_with_separate_key_and_chain(supervise, scratch_dir, pki,
                                         tmp_path):
  # Ganeti's --ssl-chain: the chain file starts with the certificate.
  with open(pki.cluster.path) as handle:
    pem = handle.read()
  begin = pem.index("-----BEGIN CERTIFICATE-----")
  key = tmp_path / "key.pem"
  key.write_text(pem[:begin])
  cert = tmp_path / "cert.pem"
  cert.write_text(pem[begin:])
  chain = tmp_path / "chain.pem"
  chain.write_text(pem[begin:] * 2)
  settings = Settings(scratch_dir, "/run/ganeti/rapi.sock",
                      ssl_cert_path=str(cert), ssl_key_path=str(key),
                      ssl_chain_path=str(chain))
  directives = _Directives(_Check(supervise, settings))
  assert 'ssl.pemfile = "%s"' % chain in directives
  assert 'ssl.privkey = "%s"' % key in directives


def test_verify_peer(supervise, scratch_dir, pki):
  settings = Settings(scratch_dir, "/run/ganeti/noded.sock",
                      ssl_cert_path=pki.cluster.path,
                      ssl_key_path=pki.cluster.path, ssl_verify_peer=True)
  directives = _Directives(_Check(supervise, settings))
  for line in ['ssl.verifyclient.activate = "enable"',
               'ssl.verifyclient.enforce = "enable"',
               'ssl.verifyclient.ca-file = "%s"' % pki.cluster.path,
               'ssl.verifyclient.exportcert = "enable"']:
    assert line in directives


@pytest.mark.parametrize(("address", "bind", "v4mapped"), [
  ("::1", "[::1]", False),
  ("::", "[::]", True),
  ("0.0.0.0", "0.0.0.0", False),
  ("0:0:0:0:0:0:0:1", "[::1]", False),
  ])
def test_addresses(supervise, scratch_dir, address, bind, v4mapped):
  settings = Settings(scratch_dir, "/run/ganeti/noded.sock",
                      bind_address=address)
  directives = _Directives(_Check(supervise, settings))
  assert 'server.bind = "%s"' % bind in directives
  assert ('server.v4mapped = "enable"' in directives) == v4mapped


def test_limits_and_timeouts(supervise, scratch_dir):
  settings = Settings(scratch_dir, "/run/ganeti/noded.sock",
                      max_request_body=10 * 1024 * 1024 + 1,
                      stream_request_body=True, read_idle_timeout=11,
                      write_idle_timeout=12, keep_alive_idle=0,
                      keep_alive_requests=7,
                      graceful_shutdown_timeout=3, http2=True)
  directives = _Directives(_Check(supervise, settings))
  assert "server.max-request-size = %d" % (10 * 1024 + 1) in directives
  assert "server.stream-request-body = 2" in directives
  assert "server.max-read-idle = 11" in directives
  assert "server.max-write-idle = 12" in directives
  assert "server.max-keep-alive-idle = 0" in directives
  assert "server.max-keep-alive-requests = 7" in directives
  assert ('server.feature-flags = ("server.graceful-shutdown-timeout" => 3,'
          ' "server.h2proto" => "enable")') in directives


@pytest.mark.parametrize(("size", "kibibytes"), [
  (0, 0), (1, 1), (1023, 1), (1024, 1), (1025, 2), (10 << 20, 10 << 10)])
def test_body_size_rounds_up_to_kibibytes(size, kibibytes):
  assert lighttpd_config.KibibytesCeiling(size) == kibibytes


def test_socket_activation_and_several_backends(supervise, scratch_dir):
  sockets = ("/run/ganeti/noded-0.sock", "/run/ganeti/noded-1.sock")
  settings = Settings(scratch_dir, sockets, socket_activation=True)
  text = _Check(supervise, settings)
  assert ('server.systemd-socket-activation = "enable"' in
          _Directives(text))
  for path in sockets:
    assert '("socket" => "%s", ' % path in text


@pytest.mark.skipif(not CanSwitchToNobody(),
                    reason="needs root and nobody/nogroup")
def test_user_group_and_access_log(supervise, scratch_dir):
  settings = Settings(scratch_dir, "/run/ganeti/noded.sock",
                      username="nobody", groupname="nogroup",
                      access_log=os.path.join(scratch_dir, "access.log"))
  directives = _Directives(_Check(supervise, settings))
  assert 'server.username = "nobody"' in directives
  assert 'server.groupname = "nogroup"' in directives
  assert ('server.modules = ("mod_fastcgi", "mod_accesslog")'
          in directives)


def test_request_log_read_from_the_environment(supervise, scratch_dir):
  settings = Settings(scratch_dir, "/run/ganeti/noded.sock", request_log=True)
  directives = _Directives(_Check(supervise, settings))
  assert 'server.modules = ("mod_fastcgi", "mod_accesslog")' in directives
  assert ("accesslog.filename = env.GANETI_HTTP_LIGHTTPD_ACCESS_LOG"
          in directives)
  assert 'accesslog.format = "%a\\t%{remote}p\\t%s\\t%r"' in directives
  with pytest.raises(ValueError):
    Settings(scratch_dir, "/run/ganeti/noded.sock", request_log=True,
             access_log=os.path.join(scratch_dir, "access.log"))


def test_system_config_spawns_the_daemon(supervise, scratch_dir):
  state_dir = os.path.join(scratch_dir, "state")
  settings = Settings(scratch_dir, os.path.join(scratch_dir, "app.sock"))
  command = [sys.executable, "-m", "tests.new.fcgi_app", "--spawned",
             os.path.join(state_dir, "app")]
  text = lighttpd_config.RenderSystemConfig(
    settings, command, max_procs=2, environment={"PYTHONPATH": REPO})
  assert '"bin-path" => "%s"' % " ".join(command) in text
  assert '"max-procs" => 2' in text
  assert ('"bin-environment" => ("PYTHONPATH" => "%s",'
          ' "GANETI_HTTP_FASTCGI_SPAWNED" => "1")' % REPO) in text
  _Check(supervise, settings, text)

  # And it runs: lighttpd spawns both copies, which answer.
  supervisor = supervise(text, state_dir, address=("127.0.0.1",
                                                   settings.port))
  supervisor.Start()
  (status, _, body) = Request("127.0.0.1", settings.port, path="/pid")
  assert status == 200
  spawned = WaitFor(lambda: len(ProcessesMentioning(command[-1])) == 2 and
                    ProcessesMentioning(command[-1]))
  assert int(body) in spawned


def test_system_config_refuses_what_bin_path_cannot_carry(scratch_dir):
  settings = Settings(scratch_dir, "/run/a.sock")
  with pytest.raises(ValueError):
    lighttpd_config.RenderSystemConfig(settings, ["/bin/x", "two words"])
  with pytest.raises(ValueError):
    lighttpd_config.RenderSystemConfig(settings, ["relative/prog"])
  with pytest.raises(ValueError):
    lighttpd_config.RenderSystemConfig(settings, [])
  with pytest.raises(ValueError):
    lighttpd_config.RenderSystemConfig(
      Settings(scratch_dir, ("/run/a.sock", "/run/b.sock")), ["/bin/x"])
  with pytest.raises(ValueError):
    lighttpd_config.RenderSystemConfig(settings, ["/bin/x"], max_procs=0)


_HOSTILE_TAG = 'Ganeti "quoted" \\ back\\slash'
_HOSTILE_DIR = 'we"ird\nserver.tag = "injected"\n# \\x (a) $HOME'


def test_escaping_carries_values_verbatim(supervise, scratch_dir, fcgi_app):
  state_dir = os.path.join(scratch_dir, _HOSTILE_DIR)
  settings = FrontendSettings(
    bind_address="127.0.0.1", port=FreePort(),
    fastcgi_socket=fcgi_app.socket_path, state_dir=state_dir,
    server_tag=_HOSTILE_TAG)
  text = lighttpd_config.Render(settings)
  supervisor = supervise(text, state_dir, address=("127.0.0.1",
                                                   settings.port))
  supervisor.Start()
  # lighttpd found its pid file at the odd path, so the path arrived intact
  with open(settings.layout.pid_file) as handle:
    assert int(handle.read()) == supervisor.pid
  # and the tag arrived intact, not replaced by the injection attempt
  (status, headers, _) = Request("127.0.0.1", settings.port)
  assert status == 200
  assert headers["Server"] == _HOSTILE_TAG


@pytest.mark.parametrize("bad", ["/a\0b", "/a\\"])
def test_unrepresentable_values_are_refused(bad):
  settings = FrontendSettings(bind_address="127.0.0.1", port=8080,
                              fastcgi_socket=bad, state_dir="/s")
  with pytest.raises(ValueError):
    lighttpd_config.Render(settings)


@pytest.mark.parametrize("changes", [
  {"port": 0},
  {"port": 65536},
  {"port": True},
  {"bind_address": "localhost"},
  {"bind_address": "[::1]"},
  {"fastcgi_socket": "relative.sock"},
  {"fastcgi_socket": ()},
  {"fastcgi_socket": "/" + "s" * 107},
  {"state_dir": "state"},
  {"ssl_cert_path": "/c.pem"},
  {"ssl_key_path": "/k.pem"},
  {"ssl_verify_peer": True},
  {"ssl_chain_path": "/chain.pem"},
  {"max_request_body": -1},
  {"read_idle_timeout": 0},
  {"write_idle_timeout": 65536},  # lighttpd would take it for 0
  {"keep_alive_idle": 70000},
  {"keep_alive_requests": -1},
  {"username": ""},
  ])
def test_invalid_settings_are_refused(changes):
  arguments = {"bind_address": "127.0.0.1", "port": 8080,
               "fastcgi_socket": "/run/a.sock", "state_dir": "/s"}
  arguments.update(changes)
  with pytest.raises(ValueError):
    FrontendSettings(**arguments)


def test_settings_are_frozen():
  settings = FrontendSettings(bind_address="127.0.0.1", port=8080,
                              fastcgi_socket="/run/a.sock", state_dir="/s")
  with pytest.raises(AttributeError):
    settings.port = 1


def test_check_reports_warnings(supervise, scratch_dir):
  # What makes the empty output asserted above meaningful.
  settings = Settings(scratch_dir, "/run/a.sock")
  text = lighttpd_config.Render(settings) + "server.no-such-option = 1\n"
  supervisor = supervise(text, settings.state_dir,
                         address=("127.0.0.1", settings.port))
  assert "unknown config-key: server.no-such-option" in supervisor.Check()
