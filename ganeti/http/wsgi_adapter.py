"""WSGI application that serves a Ganeti handler through the shared pipeline.

lighttpd hands each request to the FastCGI backend as a CGI environment;
this module turns that environment into a L{pipeline.IncomingRequest} and
the pipeline's L{pipeline.Response} into a WSGI response.  It has no
socket code: flup moves the bytes.

Trust: lighttpd terminates TLS and verifies the client's chain; the
certificate reaches us as C{SSL_CLIENT_CERT} (PEM).  A client's own headers
arrive as C{HTTP_*} variables only, so no header can pose as
C{SSL_CLIENT_CERT}; and the certificate is used only when lighttpd reports
C{SSL_CLIENT_VERIFY=SUCCESS} on a server that we configured for TLS.
"""

import functools
import os
import ssl

from ganeti import http as ganeti_http
from ganeti.http import pipeline
from ganeti.http import response_body

# CGI variables that carry request headers without the HTTP_ prefix.
_UNPREFIXED_HEADERS = {
  "CONTENT_TYPE": ganeti_http.HTTP_CONTENT_TYPE,
  "CONTENT_LENGTH": ganeti_http.HTTP_CONTENT_LENGTH,
}


@functools.lru_cache(maxsize=256)
def _HeaderName(variable):
  """C{HTTP_X_FORWARDED_FOR} -> C{X-Forwarded-For} (remembered: the same
  few names come with every request)."""
  return "-".join(part.capitalize() for part in variable[5:].split("_"))


def HeadersFromEnviron(environ):
  """Rebuild the request headers from a CGI environment."""
  pairs = []
  for (variable, value) in environ.items():
    if variable.startswith("HTTP_"):
      pairs.append((_HeaderName(variable), value))
    elif variable in _UNPREFIXED_HEADERS:
      pairs.append((_UNPREFIXED_HEADERS[variable], value))
  return pipeline.HeadersFromPairs(sorted(pairs))


def PeerCertificateFromEnviron(environ):
  """The client certificate lighttpd verified, in DER form, or None."""
  if environ.get("SSL_CLIENT_VERIFY") != "SUCCESS":
    return None
  pem = environ.get("SSL_CLIENT_CERT")
  if not pem:
    return None
  return ssl.PEM_cert_to_DER_cert(pem)


def _RequestTarget(environ):
  """The request target as the client sent it, query string included."""
  target = environ.get("REQUEST_URI")
  if target:
    return target
  query = environ.get("QUERY_STRING")
  path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
  return path + ("?" + query if query else "")


class WsgiApplication(object):
  """Serves C{server.ganeti_handler} through C{server.pipeline}.

  @param server: an object with C{ganeti_handler} and C{pipeline}
      attributes, read on every request (tests swap the handler at run time)
  @param tls: whether lighttpd terminates TLS for this server; without it a
      client certificate in the environment is ignored
  @param sendfile_dirs: directories from which a file a handler returns is
      handed to lighttpd to send (X-Sendfile) rather than copied through
      the backend; lighttpd must be configured with the same list
  """

  def __init__(self, server, tls, sendfile_dirs=()):
    self._server = server
    self._tls = tls
    self._sendfile_dirs = tuple(os.path.realpath(path) + os.sep
                                for path in sendfile_dirs)

  def __call__(self, environ, start_response):
    incoming = pipeline.IncomingRequest(
      method=environ["REQUEST_METHOD"],
      path=_RequestTarget(environ),
      headers=HeadersFromEnviron(environ),
      read_body=environ["wsgi.input"].read,
      sock=None,
      tls=self._tls,
      peer_certificate=(PeerCertificateFromEnviron(environ)
                        if self._tls else None))
    response = self._server.pipeline.Run(self._server.ganeti_handler,
                                         incoming)
    body = response.body
    headers = response.headers
    if isinstance(body, bytes):
      chunks = [body]
    elif self._MaySendfile(body):
      body.close()
      headers = [(name, value) for (name, value) in headers
                 if name.lower() != "content-length"]
      headers.append(("X-Sendfile", os.path.realpath(body.file_path)))
      chunks = []
    else:
      chunks = _ClosingIterable(
        response_body.CheckedLength(body, response.content_length),
        body.close)
    start_response("%d %s" % (response.status, response.reason),
                   [(name, str(value)) for (name, value) in headers])
    return chunks

  def _MaySendfile(self, body):
    """Whether lighttpd may send C{body}'s file itself (X-Sendfile)."""
    if body.file_path is None:
      return False
    real = os.path.realpath(body.file_path)
    return any(real.startswith(directory)
               for directory in self._sendfile_dirs)


class _ClosingIterable(object):
  """An iterable with the C{close()} a WSGI server calls when done."""

  def __init__(self, chunks, close):
    self._chunks = chunks
    self.close = close

  def __iter__(self):
    return iter(self._chunks)
