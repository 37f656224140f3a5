"""The TLS rules both backends follow, worked out from Ganeti's arguments.

The legacy backend builds a stdlib C{ssl.SSLContext} with them
(L{ServerContext}); the fastcgi backend writes them into lighttpd's
configuration (L{ganeti.http.backends.fastcgi.lighttpd.config}):

- the server presents the chain file when there is one (it starts with the
  certificate, as in Ganeti), else the certificate alone;
- a client that must present a certificate (C{ssl_verify_peer}) needs one
  that chains to the server's own certificate: Ganeti's cluster
  certificate is both the server certificate and the CA;
- TLS 1.2 or newer;
- no renegotiation: a client asking for one gets a no_renegotiation alert
  (lighttpd does the same; OpenSSL 3 does it by default, older versions
  renegotiate unless told not to).
"""

import ssl

#: The oldest TLS version either backend accepts.
MINIMUM_VERSION = ssl.TLSVersion.TLSv1_2

#: The same in OpenSSL's configuration syntax (C{MinProtocol}): "TLSv1.2".
MINIMUM_VERSION_OPENSSL = MINIMUM_VERSION.name.replace("_", ".")


def PresentedChain(cert_path, chain_path):
  """The file whose certificates the server presents."""
  return chain_path or cert_path


def ClientCertificateAuthority(cert_path):
  """The file of the CA client certificates must chain to: the server's
  own certificate."""
  return cert_path


def ServerContext(ssl_params, verify_peer):
  """Return the stdlib C{ssl.SSLContext} of a server.

  @param ssl_params: C{HttpSslParams}
  @param verify_peer: whether clients must present a certificate
  """
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  context.minimum_version = MINIMUM_VERSION
  context.options |= ssl.OP_NO_RENEGOTIATION
  context.load_cert_chain(
    certfile=PresentedChain(ssl_params.ssl_cert_path,
                            ssl_params.ssl_chain_path),
    keyfile=ssl_params.ssl_key_path)
  if verify_peer:
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(
      cafile=ClientCertificateAuthority(ssl_params.ssl_cert_path))
  return context
