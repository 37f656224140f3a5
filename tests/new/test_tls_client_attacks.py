"""Clients without a certificate of the cluster, against lighttpd as the
fastcgi backend runs it for noded (issue 14's list of what holds; the
foreign CA, no certificate and forged headers are tested beside the
configuration in test_lighttpd_frontend.py and test_fastcgi_server.py)."""

import datetime
import os
import socket
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.new.lighttpd_helpers import fcgi_app, scratch_dir, supervise
from tests.pki import WriteCredential
from tests.new.test_lighttpd_frontend import tls_port

_ = (fcgi_app, scratch_dir, supervise, tls_port)  # fixtures


def _ClusterKeyAndName(pki):
  with open(pki.cluster.path, "rb") as handle:
    pem = handle.read()
  key = serialization.load_pem_private_key(pem, None)
  return (key, x509.load_pem_x509_certificate(pem).subject)


def _Certificate(subject, issuer, issuer_key, key, days=(-1, 30), ca=False):
  now = datetime.datetime.now(datetime.timezone.utc)
  builder = (x509.CertificateBuilder().subject_name(subject)
             .issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now + datetime.timedelta(days=days[0]))
             .not_valid_after(now + datetime.timedelta(days=days[1])))
  if ca:
    builder = builder.add_extension(
      x509.BasicConstraints(ca=True, path_length=None), critical=True)
  return builder.sign(issuer_key, hashes.SHA256())


def _Expired(pki, path):
  """A client certificate the cluster's key signed, expired yesterday."""
  (cluster_key, cluster_name) = _ClusterKeyAndName(pki)
  key = ec.generate_private_key(ec.SECP256R1())
  name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node1")])
  return WriteCredential(path, key, _Certificate(
    name, cluster_name, cluster_key, key, days=(-30, -1))).path


def _FakeCluster(pki, path):
  """A client certificate of a CA that has the cluster's name, not its key."""
  (_, cluster_name) = _ClusterKeyAndName(pki)
  fake_key = ec.generate_private_key(ec.SECP256R1())
  key = ec.generate_private_key(ec.SECP256R1())
  name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node1")])
  return WriteCredential(path, key, _Certificate(
    name, cluster_name, fake_key, key)).path


def _SelfSignedClusterName(pki, path):
  """A self-signed certificate that names itself as the cluster."""
  (_, cluster_name) = _ClusterKeyAndName(pki)
  key = ec.generate_private_key(ec.SECP256R1())
  return WriteCredential(path, key, _Certificate(
    cluster_name, cluster_name, key, key, ca=True)).path


def _Context(certificate_path=None, maximum=None):
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  context.check_hostname = False
  context.verify_mode = ssl.CERT_NONE
  if certificate_path:
    context.load_cert_chain(certificate_path)
  if maximum:
    context.maximum_version = maximum
  return context


@pytest.mark.parametrize("make", [_Expired, _FakeCluster,
                                  _SelfSignedClusterName],
                         ids=["expired", "fake CA with the cluster's name",
                              "self-signed with the cluster's name"])
@pytest.mark.parametrize("maximum", [ssl.TLSVersion.TLSv1_2, None],
                         ids=["TLS 1.2", "TLS 1.3"])
def test_client_certificates_not_of_the_cluster_are_refused(
    tls_port, pki, tmp_path, make, maximum):
  path = make(pki, str(tmp_path / "client.pem"))
  with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:
    with pytest.raises((ssl.SSLError, ConnectionError)):
      with _Context(path, maximum).wrap_socket(raw) as tls:
        tls.sendall(b"GET / HTTP/1.0\r\n\r\n")
        assert tls.recv(100) == b""  # (TLS 1.3: the alert comes here)


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
