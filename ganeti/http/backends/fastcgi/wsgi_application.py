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

import logging
import os
import ssl
import urllib.parse

from ganeti.http.backends.fastcgi import flup_gateway
from ganeti.http.core import pipeline
from ganeti.http.core import request_fields
from ganeti.http.core import request_log
from ganeti.http.core import response_body


def PeerCertificateFromEnviron(environ):
  """The client certificate lighttpd verified, in DER form, or None."""
  if environ.get("SSL_CLIENT_VERIFY") != "SUCCESS":
    return None
  pem = environ.get("SSL_CLIENT_CERT")
  if not pem:
    return None
  return ssl.PEM_cert_to_DER_cert(pem)


class DetachedClientSocket(object):
  """Stands in for C{req.request_sock} on the fastcgi backend, where the
  client's connection ends at lighttpd.

  Ganeti's RAPI checks whether its client has gone with
  C{request_sock.recv(0)} (C{rlib2._CheckIfConnectionDropped}, on every
  poll of C{GET /2/os}); on the legacy backend that returns C{b""}, which
  it reads as "still there".  This does the same, instead of the
  C{AttributeError} that C{None} would raise there.
  """

  def recv(self, size, flags=0):  # pylint: disable=unused-argument
    """Return C{b""}, as C{recv(0)} on a connected socket does."""
    return b""


_DETACHED_CLIENT_SOCKET = DetachedClientSocket()


def _RequestTarget(environ):
  """The request target as the client sent it, query string included."""
  target = environ.get("REQUEST_URI")
  if target:
    return target
  query = environ.get("QUERY_STRING")
  path = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "")
  return path + ("?" + query if query else "")


class WsgiApplication(object):
  """Serves a Ganeti handler through the request pipeline.

  @param request_pipeline: the server's L{pipeline.RequestPipeline}
  @param current_handler: returns the daemon's C{HttpServerHandler}; asked
      on every request, as the legacy backend reads the server's
      C{ganeti_handler} on every request (Ganeti's own tests replace it on
      a running server)
  @param tls: whether lighttpd terminates TLS for this server; without it a
      client certificate in the environment is ignored
  @param sendfile_dirs: directories from which a file a handler returns is
      handed to lighttpd to send (X-Sendfile) rather than copied through
      the backend; lighttpd must be configured with the same list
  @param log_requests: log each request (L{request_log}); not when
      lighttpd's access log is the daemon's request log
      (L{access_log<ganeti.http.backends.fastcgi.lighttpd.access_log>})
  """

  def __init__(self, request_pipeline, current_handler, tls,
               sendfile_dirs=(), log_requests=True):
    self._pipeline = request_pipeline
    self._current_handler = current_handler
    self._tls = tls
    self._log_requests = log_requests
    self._sendfile_dirs = tuple(os.path.join(os.path.realpath(path), "")
                                for path in sendfile_dirs)

  def __call__(self, environ, start_response):
    target = _RequestTarget(environ)
    incoming = pipeline.IncomingRequest(
      method=environ["REQUEST_METHOD"],
      path=target,
      headers=request_fields.HeadersFromCgiVariables(environ),
      read_body=environ["wsgi.input"].read,
      sock=_DETACHED_CLIENT_SOCKET,
      tls=self._tls,
      peer_certificate=(PeerCertificateFromEnviron(environ)
                        if self._tls else None))
    response = self._pipeline.Run(self._current_handler(), incoming)
    if self._log_requests:
      # The client's address as lighttpd saw it (the FastCGI peer is
      # lighttpd itself).
      request_log.LogRequest(
        environ.get("REMOTE_ADDR", "-"), environ.get("REMOTE_PORT", "-"),
        request_log.RequestLine(incoming.method, target,
                                environ.get("SERVER_PROTOCOL", "-")),
        response.status)
    body = response.body
    headers = response.headers
    after_connection = environ.get(flup_gateway.AFTER_CONNECTION_KEY)
    sendfile_value = (self._SendfileValue(body)
                      if after_connection is not None and
                      not isinstance(body, bytes) else None)
    if isinstance(body, bytes):
      chunks = [body]
    elif sendfile_value is not None:
      # Keep the file open until lighttpd has opened it too: closing it
      # may delete it (a NamedTemporaryFile, say).
      after_connection.append(body.close)
      headers = [(name, value) for (name, value) in headers
                 if name.lower() != "content-length"]
      headers.append(("X-Sendfile", sendfile_value))
      chunks = []
    else:
      chunks = _ClosingIterable(
        response_body.CheckedLength(body, response.content_length),
        body.close)
    start_response("%d %s" % (response.status, response.reason),
                   [(name, str(value)) for (name, value) in headers])
    return chunks

  def _SendfileValue(self, body):
    """The X-Sendfile header value that has lighttpd send C{body}'s file
    itself, or None if the backend must send it.

    Only for a file in one of the sendfile directories, whose path still
    names the very file the handler opened (not one unlinked or replaced
    since), and whose path lighttpd can take: it URL-decodes the value,
    wants UTF-8 and turns control characters into "_", so the path goes
    percent-encoded, and one with control characters is not handed over.
    """
    if body.file_path is None or not self._sendfile_dirs:
      return None
    real = os.path.realpath(body.file_path)
    if not any(real.startswith(directory)
               for directory in self._sendfile_dirs):
      return None
    try:
      named = os.stat(real)
      os.fsencode(real).decode("utf-8")
    except (OSError, UnicodeError) as err:
      logging.info("Sending %r through the backend: %s", real, err)
      return None
    if any(ord(char) < 32 or ord(char) == 127 for char in real):
      logging.info("Sending %r through the backend: control characters",
                   real)
      return None
    if (named.st_dev, named.st_ino) != body.file_identity:
      logging.info("Sending %r through the backend: the path names another"
                   " file now", real)
      return None
    return urllib.parse.quote(os.fsencode(real), safe="/")


class _ClosingIterable(object):
  """An iterable with the C{close()} a WSGI server calls when done."""

  def __init__(self, chunks, close):
    self._chunks = chunks
    self.close = close

  def __iter__(self):
    return iter(self._chunks)
