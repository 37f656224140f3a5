"""Fixtures shared by the whole suite.

``serve`` starts a real ``ganeti.http.server.HttpServer`` for a handler on
the backend under test, chosen the way an operator chooses it: through the
``GANETI_HTTP_BACKEND`` environment variable.  Tests that take ``serve``
run once per backend.
"""

import http.client
import logging
import os
import ssl

import pytest

from ganeti import http as ganeti_http
from ganeti.http import server as http_server
from tests.pki import ClusterPki

BACKENDS = ("legacy", "fastcgi")


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
  """A cluster certificate, a node certificate it signed and a foreign one."""
  directory = tmp_path_factory.mktemp("pki")
  os.chmod(directory, 0o755)  # lighttpd may run as another user
  return ClusterPki(str(directory))


@pytest.fixture(params=BACKENDS)
def backend(request):
  """The name of the backend under test."""
  return request.param


class RunningServer(object):
  """A started server and how to reach it."""

  def __init__(self, server, address, tls):
    self.server = server
    self.address = address
    self.port = server.server_address[1]
    self.tls = tls

  def Connection(self, client_cert=None, timeout=10):
    """An C{http.client} connection to the server (TLS when it uses TLS).

    @param client_cert: a L{tests.pki.Credential} to present, or None
    """
    if not self.tls:
      return http.client.HTTPConnection(self.address, self.port,
                                        timeout=timeout)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if client_cert is not None:
      context.load_cert_chain(client_cert.path)
    return http.client.HTTPSConnection(self.address, self.port,
                                       timeout=timeout, context=context)

  def Request(self, method, path, body=None, headers=None, client_cert=None):
    """Send one request; return C{(status, headers, body)}."""
    connection = self.Connection(client_cert=client_cert)
    try:
      connection.request(method, path, body=body, headers=headers or {})
      response = connection.getresponse()
      return (response.status, response.headers, response.read())
    finally:
      connection.close()


@pytest.fixture
def serve(backend, monkeypatch, tmp_path):
  """Return C{serve(handler, address="127.0.0.1", **kwargs)}.

  It starts an C{HttpServer} on a free port with the keyword arguments of
  Ganeti's current signature and returns a L{RunningServer}; every server
  is stopped when the test ends.
  """
  yield from _Serving(backend, monkeypatch, tmp_path)


@pytest.fixture
def fastcgi(monkeypatch, tmp_path):
  """L{serve} on the fastcgi backend only (for tests/new)."""
  yield from _Serving("fastcgi", monkeypatch, tmp_path)


def _Serving(backend, monkeypatch, tmp_path):
  """The generator behind L{serve} and L{fastcgi}."""
  monkeypatch.setenv("GANETI_HTTP_BACKEND", backend)
  monkeypatch.setenv("GANETI_HTTP_BACKEND_CONFIG",
                     str(tmp_path / "no-such-file.conf"))
  started = []

  def _Serve(handler, address="127.0.0.1", **kwargs):
    server = http_server.HttpServer(address, 0, handler, daemon_name="test",
                                    **kwargs)
    started.append(server)
    assert server.backend == backend
    server.Start()
    return RunningServer(server, address, kwargs.get("ssl_params") is not None)

  yield _Serve
  for server in started:
    server.Stop()


def SslParams(credential):
  """C{HttpSslParams} for a L{tests.pki.Credential} (key and cert in one)."""
  return ganeti_http.HttpSslParams(credential.path, credential.path)


@pytest.fixture(autouse=True)
def _LogAtInfo(caplog):
  caplog.set_level(logging.INFO)


@pytest.fixture(autouse=True)
def lighttpd_log_dir(monkeypatch, tmp_path_factory):
  """The directory of lighttpd's error logs for this test (instead of
  Ganeti's /var/log/ganeti): C{GANETI_HTTP_LOG_DIR}."""
  path = tmp_path_factory.mktemp("log")
  monkeypatch.setenv("GANETI_HTTP_LOG_DIR", str(path))
  return str(path)
