"""lighttpd as rendered and supervised here, seen by clients: TLS client
certificates, body limits, streaming, addresses, privilege separation (TLS
attacks on both backends: tests/legacy/test_tls_attacks.py)."""

import grp
import json
import os
import pwd
import shutil
import socket
import ssl
import stat

import pytest

from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.backends.fastcgi.lighttpd import layout as lighttpd_layout
from tests.new.lighttpd_helpers import (CanSwitchToNobody, Request,
                                        Settings, fcgi_app, scratch_dir,
                                        supervise)

_ = (fcgi_app, scratch_dir, supervise)  # fixtures


def _Serve(supervise, scratch_dir, fcgi_app, **kwargs):
  """Start lighttpd for L{Settings} with C{kwargs}; return its port."""
  settings = Settings(scratch_dir, fcgi_app.socket_path, **kwargs)
  supervisor = supervise(lighttpd_config.Render(settings), settings.state_dir,
                         address=(settings.bind_address, settings.port),
                         user=settings.username, group=settings.groupname)
  supervisor.Start()
  return (supervisor, settings.port)


@pytest.fixture
def tls_port(supervise, scratch_dir, fcgi_app, pki):
  """Port of a lighttpd requiring client certificates, as noded does."""
  return _Serve(supervise, scratch_dir, fcgi_app,
                ssl_cert_path=pki.cluster.path, ssl_key_path=pki.cluster.path,
                ssl_verify_peer=True)[1]


def _CertificatePem(credential):
  with open(credential.path) as handle:
    pem = handle.read()
  return pem[pem.index("-----BEGIN CERTIFICATE-----"):]


def _Handshake(port, credential=None, maximum=None):
  """A TLS handshake (and one request) with the given client certificate."""
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  context.check_hostname = False
  context.verify_mode = ssl.CERT_NONE
  if credential is not None:
    context.load_cert_chain(credential.path)
  if maximum is not None:
    context.maximum_version = maximum
  with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
    with context.wrap_socket(raw) as tls:
      tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
      return tls.recv(100)


@pytest.mark.parametrize("who", ["node", "cluster"])
def test_client_certificate_of_the_cluster_is_accepted(tls_port, pki, who):
  credential = getattr(pki, who)
  (status, _, body) = Request("127.0.0.1", tls_port, path="/env", tls=True,
                              client_cert=credential)
  assert status == 200
  environ = json.loads(body)
  assert environ["SSL_CLIENT_VERIFY"] == "SUCCESS"
  assert environ["HTTPS"] == "on"
  assert (environ["SSL_CLIENT_CERT"].strip() ==
          _CertificatePem(credential).strip())
  assert environ["PATH_INFO"] == "/env"
  assert environ["SCRIPT_NAME"] == ""


@pytest.mark.parametrize("who", ["foreign", None])
def test_other_clients_are_refused_in_the_handshake(tls_port, pki, who):
  credential = getattr(pki, who) if who else None
  # TLS 1.2: the server's verdict ends the handshake itself.
  with pytest.raises(ssl.SSLError):
    _Handshake(tls_port, credential, maximum=ssl.TLSVersion.TLSv1_2)
  # TLS 1.3: the client's side of the handshake completes first, and the
  # alert arrives in place of any answer.
  with pytest.raises(ssl.SSLError) as info:
    _Handshake(tls_port, credential)
  assert ("unknown ca" in str(info.value) if who
          else "certificate required" in str(info.value))


def test_plain_http_gets_no_client_certificate(supervise, scratch_dir,
                                               fcgi_app):
  (_, port) = _Serve(supervise, scratch_dir, fcgi_app)
  environ = json.loads(Request("127.0.0.1", port, path="/env")[2])
  assert "SSL_CLIENT_CERT" not in environ
  assert "HTTPS" not in environ


def test_oversized_body_gets_413(supervise, scratch_dir, fcgi_app):
  # 1500 bytes round up to lighttpd's 2 KiB.
  (_, port) = _Serve(supervise, scratch_dir, fcgi_app, max_request_body=1500)
  assert Request("127.0.0.1", port, "POST", "/echo", body=b"x" * 2048)[::2] \
      == (200, b"2048\n")
  assert Request("127.0.0.1", port, "POST", "/echo",
                 body=b"x" * 2049)[0] == 413
  # an iterable body: http.client sends it chunked, without a length
  chunked = iter([b"x" * 1500, b"x" * 1500])
  assert Request("127.0.0.1", port, "POST", "/echo", body=chunked)[0] == 413


def test_unlimited_body(supervise, scratch_dir, fcgi_app):
  (_, port) = _Serve(supervise, scratch_dir, fcgi_app)
  size = 3 * 1024 * 1024
  assert Request("127.0.0.1", port, "POST", "/echo",
                 body=b"x" * size)[::2] == (200, b"%d\n" % size)


def test_chunked_body_reaches_the_backend_with_a_length(supervise,
                                                        scratch_dir,
                                                        fcgi_app):
  (_, port) = _Serve(supervise, scratch_dir, fcgi_app)
  chunked = iter([b"abc", b"defgh"])  # sent chunked, without a length
  assert Request("127.0.0.1", port, "POST", "/echo", body=chunked)[::2] == (
    200, b"8\n")


def test_response_is_streamed(supervise, scratch_dir, fcgi_app):
  """The first chunk reaches the client while the application still holds
  back the rest (until the client has it)."""
  (_, port) = _Serve(supervise, scratch_dir, fcgi_app)
  with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
    client.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n"
                   b"Connection: close\r\n\r\n")
    received = b""
    while b"chunk 0" not in received:
      data = client.recv(4096)
      assert data, received  # closed before the first chunk
      received += data
    assert b"chunk 1" not in received
    open(fcgi_app.socket_path + ".go", "w").close()
    while True:
      data = client.recv(4096)
      if not data:
        break
      received += data
  assert b"Transfer-Encoding: chunked" in received
  assert b"chunk 2" in received


@pytest.mark.parametrize("address", ["::1", "::"])
def test_ipv6(supervise, scratch_dir, fcgi_app, address):
  (_, port) = _Serve(supervise, scratch_dir, fcgi_app, bind_address=address)
  assert Request("::1", port)[::2] == (200, b"hello\n")
  if address == "::":
    # dual-stack, like the legacy backend
    assert Request("127.0.0.1", port)[::2] == (200, b"hello\n")



def _Ids(pid):
  """The real user and group ids of a process."""
  ids = {}
  with open("/proc/%d/status" % pid) as handle:
    for line in handle:
      if line.startswith(("Uid:", "Gid:")):
        ids[line[:3]] = int(line.split()[1])
  return (ids["Uid"], ids["Gid"])


@pytest.mark.skipif(not CanSwitchToNobody(),
                    reason="needs root and nobody/nogroup")
def test_privilege_separation(supervise, scratch_dir, fcgi_app, pki,
                              tmp_path):
  # The key is root's alone: lighttpd reads it before switching user.
  key = tmp_path / "server.pem"
  shutil.copy(pki.cluster.path, key)
  os.chmod(key, 0o600)
  (supervisor, port) = _Serve(supervise, scratch_dir, fcgi_app,
                              ssl_cert_path=str(key), ssl_key_path=str(key),
                              ssl_verify_peer=True, username="nobody",
                              groupname="nogroup")
  (status, _, body) = Request("127.0.0.1", port, path="/env", tls=True,
                              client_cert=pki.node)
  assert status == 200
  assert json.loads(body)["SSL_CLIENT_VERIFY"] == "SUCCESS"
  nobody = pwd.getpwnam("nobody").pw_uid
  nogroup = grp.getgrnam("nogroup").gr_gid
  assert _Ids(supervisor.pid) == (nobody, nogroup)

  layout = lighttpd_layout.StateLayout(os.path.dirname(
    supervisor.config_path))

  def _Owner(path):
    info = os.lstat(path)
    return (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode))
  assert _Owner(layout.state_dir) == (0, nogroup, 0o710)
  assert _Owner(layout.document_root) == (0, nogroup, 0o710)
  assert _Owner(layout.config) == (0, 0, 0o600)
  assert _Owner(layout.upload_dir) == (nobody, nogroup, 0o700)
  assert os.lstat(layout.pid_file).st_uid == 0
