"""HTTP/2 against lighttpd as the fastcgi backend runs it for noded
(issue 14's list of what holds; the TLS attacks both backends face are in
tests/legacy/test_tls_attacks.py, the foreign CA, no certificate and
forged headers beside the configuration in test_lighttpd_frontend.py and
test_fastcgi_server.py)."""

import socket
import ssl

import pytest

from tests.new.lighttpd_helpers import fcgi_app, scratch_dir, supervise
from tests.new.test_lighttpd_frontend import tls_port

_ = (fcgi_app, scratch_dir, supervise, tls_port)  # fixtures


def _Context(certificate_path):
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  context.check_hostname = False
  context.verify_mode = ssl.CERT_NONE
  context.load_cert_chain(certificate_path)
  return context


def test_http2_is_not_offered(tls_port, pki):
  """A client offering only HTTP/2 is refused in the handshake; one
  offering both gets HTTP/1.1."""
  context = _Context(pki.node.path)
  context.set_alpn_protocols(["h2"])
  with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
    with pytest.raises(ssl.SSLError) as info:
      context.wrap_socket(raw)
  assert "no application protocol" in str(info.value)
  context = _Context(pki.node.path)
  context.set_alpn_protocols(["h2", "http/1.1"])
  with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
    with context.wrap_socket(raw) as tls:
      assert tls.selected_alpn_protocol() == "http/1.1"
      tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
      assert tls.recv(100).startswith(b"HTTP/1.0 200")
