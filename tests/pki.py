"""Test certificates shaped like a Ganeti cluster's.

Ganeti uses one self-signed cluster certificate as the node daemon's server
certificate *and* as the CA that client certificates must chain to.  Here:

- ``cluster``: self-signed, the server's key+cert file and the trust anchor;
- ``node``: a client certificate signed by ``cluster``;
- ``foreign``: a self-signed certificate of an unrelated CA.

Each is one PEM file holding the private key and the certificate, as
Ganeti's ``server.pem`` and ``client.pem`` do.
"""

import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ganeti import http


class Credential(object):
  """One key+certificate PEM file and the certificate's Ganeti digest."""

  def __init__(self, path, digest):
    self.path = path
    self.digest = digest


def _Name(common_name):
  return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _Issue(common_name, issuer_name=None, issuer_key=None):
  key = ec.generate_private_key(ec.SECP256R1())
  now = datetime.datetime.now(datetime.timezone.utc)
  builder = (x509.CertificateBuilder()
             .subject_name(_Name(common_name))
             .issuer_name(issuer_name or _Name(common_name))
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=30)))
  if issuer_key is None:
    builder = builder.add_extension(x509.BasicConstraints(ca=True,
                                                          path_length=None),
                                    critical=True)
  cert = builder.sign(issuer_key or key, hashes.SHA256())
  return key, cert


def WriteCredential(path, key, cert):
  """Write C{key} and C{cert} as one PEM file at C{path}, readable by all
  (lighttpd may run as another user); return its L{Credential}."""
  with open(path, "wb") as handle:
    handle.write(key.private_bytes(serialization.Encoding.PEM,
                                   serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    handle.write(cert.public_bytes(serialization.Encoding.PEM))
  os.chmod(path, 0o644)
  digest = http.FormatCertificateDigest(
    cert.public_bytes(serialization.Encoding.DER))
  return Credential(path, digest)


def _Write(directory, name, key, cert):
  return WriteCredential(os.path.join(directory, name + ".pem"), key, cert)


class ClusterPki(object):
  """The three credentials above, written into ``directory``."""

  def __init__(self, directory):
    cluster_key, cluster_cert = _Issue("cluster.example.com")
    node_key, node_cert = _Issue("node1.example.com", cluster_cert.subject,
                                 cluster_key)
    foreign_key, foreign_cert = _Issue("intruder.example.com")
    self.cluster = _Write(directory, "cluster", cluster_key, cluster_cert)
    self.node = _Write(directory, "node", node_key, node_cert)
    self.foreign = _Write(directory, "foreign", foreign_key, foreign_cert)
