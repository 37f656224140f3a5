"""Ganeti's HTTP layer: constants, exceptions and small records.

This module keeps every public name of Ganeti's ``ganeti.http`` that Ganeti's
daemons, tools and tests use.  It imports nothing from the rest of Ganeti at
module level, so it works both inside a Ganeti tree and on its own.

The server lives in :mod:`ganeti.http.server`, the pycurl client in
:mod:`ganeti.http.client` and Basic authentication in :mod:`ganeti.http.auth`;
as in Ganeti, importing this package does not import them.
"""

import email
import hashlib
import os
import ssl
import sys

#: This package's version: the Debian package's and setup.py's too.
SHIM_VERSION = "0.1.0"

#: Where the Debian package keeps the Python libraries Debian 12 lacks
#: (flup), outside the system's Python path.
PRIVATE_LIBRARY_DIR = "/usr/lib/ganeti-http-shim/python"


def _UsePrivateLibraries():
  """Put L{PRIVATE_LIBRARY_DIR}, if it exists, first on C{sys.path}.

  It holds only the libraries this package needs, in the versions it was
  tested with, so they win over any other copy and shadow nothing else.
  """
  if os.path.isdir(PRIVATE_LIBRARY_DIR) and PRIVATE_LIBRARY_DIR not in sys.path:
    sys.path.insert(0, PRIVATE_LIBRARY_DIR)


_UsePrivateLibraries()


def _ReleaseVersion():
  """Return Ganeti's release version when Ganeti is installed, else ours."""
  try:
    from ganeti import constants  # pylint: disable=import-outside-toplevel
    return constants.RELEASE_VERSION
  except (ImportError, AttributeError):
    return "3.2 (ganeti-http-shim)"


HTTP_GANETI_VERSION = "Ganeti %s" % _ReleaseVersion()

HTTP_OK = 200
HTTP_NO_CONTENT = 204
HTTP_NOT_MODIFIED = 304

HTTP_0_9 = "HTTP/0.9"
HTTP_1_0 = "HTTP/1.0"
HTTP_1_1 = "HTTP/1.1"

HTTP_GET = "GET"
HTTP_HEAD = "HEAD"
HTTP_POST = "POST"
HTTP_PUT = "PUT"
HTTP_DELETE = "DELETE"

HTTP_ETAG = "ETag"
HTTP_HOST = "Host"
HTTP_SERVER = "Server"
HTTP_DATE = "Date"
HTTP_USER_AGENT = "User-Agent"
HTTP_CONTENT_TYPE = "Content-Type"
HTTP_CONTENT_LENGTH = "Content-Length"
HTTP_CONNECTION = "Connection"
HTTP_KEEP_ALIVE = "Keep-Alive"
HTTP_WWW_AUTHENTICATE = "WWW-Authenticate"
HTTP_AUTHORIZATION = "Authorization"
HTTP_AUTHENTICATION_INFO = "Authentication-Info"
HTTP_ALLOW = "Allow"

HTTP_APP_OCTET_STREAM = "application/octet-stream"
HTTP_APP_JSON = "application/json"

# Socket operation codes and buffer size of Ganeti's old asyncore server.
# Nothing here uses them; they stay because they are public names.
SOCKOP_SEND = 0
SOCKOP_RECV = 1
SOCKOP_SHUTDOWN = 2
SOCKOP_HANDSHAKE = 3

SOCK_BUF_SIZE = 32768


class HttpError(Exception):
  """An internal HTTP error: timeout, malformed message, failed handshake.

  Never sent to a client as such.
  """


class HttpConnectionClosed(Exception):
  """The peer closed the connection."""


class HttpSessionHandshakeUnexpectedEOF(HttpError):
  """The peer went away during the TLS handshake."""


class HttpSocketTimeout(Exception):
  """A socket operation timed out."""


class HttpException(Exception):
  """An error that the server answers with an HTTP status.

  ``code`` is the status, ``message`` the text shown to the client and
  ``headers`` a dict of extra response headers (or None).  As in Ganeti,
  ``str()`` of the exception is empty: read ``message``.
  """
  code = None
  message = None

  def __init__(self, message=None, headers=None):
    Exception.__init__(self)
    self.message = message
    self.headers = headers


def _StatusException(name, code, doc):
  """Define an ``HttpException`` subclass for one status code."""
  return type(name, (HttpException, ), {"code": code, "__doc__": doc,
                                        "__module__": __name__})


HttpBadRequest = _StatusException(
  "HttpBadRequest", 400, "400 Bad Request: the request is malformed.")
HttpUnauthorized = _StatusException(
  "HttpUnauthorized", 401,
  "401 Unauthorized: authentication is needed (pass WWW-Authenticate in"
  " ``headers``).")
HttpForbidden = _StatusException(
  "HttpForbidden", 403, "403 Forbidden: the request is refused.")
HttpNotFound = _StatusException(
  "HttpNotFound", 404, "404 Not Found: no such resource.")
HttpMethodNotAllowed = _StatusException(
  "HttpMethodNotAllowed", 405,
  "405 Method Not Allowed (pass Allow in ``headers``).")
HttpNotAcceptable = _StatusException(
  "HttpNotAcceptable", 406, "406 Not Acceptable.")
HttpRequestTimeout = _StatusException(
  "HttpRequestTimeout", 408, "408 Request Timeout.")
HttpConflict = _StatusException(
  "HttpConflict", 409, "409 Conflict with the resource's current state.")
HttpGone = _StatusException(
  "HttpGone", 410, "410 Gone: the resource no longer exists.")
HttpLengthRequired = _StatusException(
  "HttpLengthRequired", 411, "411 Length Required: send Content-Length.")
HttpPreconditionFailed = _StatusException(
  "HttpPreconditionFailed", 412, "412 Precondition Failed.")
HttpUnsupportedMediaType = _StatusException(
  "HttpUnsupportedMediaType", 415,
  "415 Unsupported Media Type: the body's format is not accepted.")
HttpInternalServerError = _StatusException(
  "HttpInternalServerError", 500, "500 Internal Server Error.")
HttpNotImplemented = _StatusException(
  "HttpNotImplemented", 501, "501 Not Implemented.")
HttpBadGateway = _StatusException(
  "HttpBadGateway", 502, "502 Bad Gateway: an upstream server failed.")
HttpServiceUnavailable = _StatusException(
  "HttpServiceUnavailable", 503,
  "503 Service Unavailable (a Retry-After header may be passed).")
HttpGatewayTimeout = _StatusException(
  "HttpGatewayTimeout", 504, "504 Gateway Timeout: an upstream call timed out.")
HttpVersionNotSupported = _StatusException(
  "HttpVersionNotSupported", 505, "505 HTTP Version Not Supported.")


def ParseHeaders(buf):
  """Parse RFC 822 headers from the text file object ``buf``.

  @return: an C{email.message.Message} (case-insensitive C{get} and C{in})
  """
  return email.message_from_file(buf)


def FormatCertificateDigest(der_cert):
  """Return the SHA-1 digest of a DER certificate as Ganeti writes it.

  That is 20 upper-case hex pairs joined by colons, the format of pyOpenSSL's
  C{X509.digest("sha1")} and of the digests in ssconf's candidate map.
  """
  return ":".join("%02X" % byte for byte in hashlib.sha1(der_cert).digest())


def _ReadFile(path):
  with open(path, "r") as handle:
    return handle.read()


class HttpSslParams(object):
  """Key, certificate and optional chain file of a TLS server.

  Both PEM files are read at construction, so a missing file fails early.
  """

  def __init__(self, ssl_key_path, ssl_cert_path, ssl_chain_path=None):
    self.ssl_key_path = ssl_key_path
    self.ssl_key_pem = _ReadFile(ssl_key_path)
    self.ssl_cert_path = ssl_cert_path
    self.ssl_cert_pem = _ReadFile(ssl_cert_path)
    self.ssl_chain_path = ssl_chain_path

  def GetCertificateDigest(self):
    """Return the SHA-1 digest of the server certificate ("AB:CD:...")."""
    return FormatCertificateDigest(
      ssl.PEM_cert_to_DER_cert(_FirstCertificate(self.ssl_cert_pem)))

  def GetCertificateFilename(self):
    """Return the path of the server certificate."""
    return self.ssl_cert_path

  def GetChain(self):
    """Return the path of the certificate chain file, or None."""
    return self.ssl_chain_path

  def GetKey(self):
    """Return the private key as a pyOpenSSL C{PKey} (needs pyOpenSSL)."""
    from OpenSSL import crypto  # pylint: disable=import-outside-toplevel
    return crypto.load_privatekey(crypto.FILETYPE_PEM, self.ssl_key_pem)

  def GetCertificate(self):
    """Return the certificate as a pyOpenSSL C{X509} (needs pyOpenSSL)."""
    from OpenSSL import crypto  # pylint: disable=import-outside-toplevel
    return crypto.load_certificate(crypto.FILETYPE_PEM, self.ssl_cert_pem)


def _FirstCertificate(pem_text):
  """Return the first PEM certificate block of ``pem_text``."""
  begin = pem_text.index(ssl.PEM_HEADER)
  end = pem_text.index(ssl.PEM_FOOTER, begin) + len(ssl.PEM_FOOTER)
  return pem_text[begin:end]


class HttpMessage(object):
  """A plain record of one HTTP message: start line, headers and body."""

  def __init__(self):
    self.start_line = None
    self.headers = None
    self.body = None


class HttpClientToServerStartLine(object):
  """The request line, e.g. C{GET /path HTTP/1.1}."""

  def __init__(self, method, path, version):
    self.method = method
    self.path = path
    self.version = version

  def __str__(self):
    return "%s %s %s" % (self.method, self.path, self.version)


class HttpServerToClientStartLine(object):
  """The status line, e.g. C{HTTP/1.1 200 OK}."""

  def __init__(self, version, code, reason):
    self.version = version
    self.code = code
    self.reason = reason

  def __str__(self):
    return "%s %s %s" % (self.version, self.code, self.reason)
