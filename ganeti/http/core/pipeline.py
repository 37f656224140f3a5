"""The request pipeline every backend runs: no sockets, no processes.

A backend (the stdlib server or the FastCGI application) parses the
transport, then hands the pipeline an :class:`IncomingRequest` and gets back a
:class:`Response` to write.  Everything a Ganeti handler can observe happens
here, once, so it cannot differ between backends:

1. only GET, POST, PUT and DELETE are served (501 otherwise);
2. the client certificate is checked with ``ssl_verify_callback``;
3. ``Content-Length`` is validated and the body read in full and capped
   (413), or, for a handler with C{STREAM_REQUEST_BODY}, offered as a
   stream (see L{request_body});
4. ``_HttpServerRequest`` is built; ``PreHandleRequest`` then
   ``HandleRequest`` run;
5. the result becomes bytes or a stream (see L{response_body}); anything
   else is a 500;
6. an ``HttpException`` becomes its status, its headers and the handler's
   ``FormatErrorMessage`` body; any other exception is logged and becomes
   a 500.
"""

import html
import http
import http.client
import logging
import re
import string

from ganeti import http as ganeti_http
from ganeti.http.core import request_body
from ganeti.http.core import response_body


#: Content type of the default error page.
DEFAULT_ERROR_CONTENT_TYPE = "text/html"

#: The default error page, filled with C{code}, C{message} and C{explain}.
DEFAULT_ERROR_MESSAGE = """\
<html>
<head><title>Error %(code)d</title></head>
<body>
<h1>Error %(code)d</h1>
<p>Message: %(message)s.</p>
<p>Error code explanation: %(code)s = %(explain)s.</p>
</body>
</html>
"""

#: Methods a Ganeti handler is ever called with.
SUPPORTED_METHODS = frozenset([ganeti_http.HTTP_GET, ganeti_http.HTTP_POST,
                               ganeti_http.HTTP_PUT, ganeti_http.HTTP_DELETE])

#: Largest request body accepted (Ganeti's limit), in bytes.
MAX_REQUEST_BODY_SIZE = 10 * 1024 * 1024

#: Status code -> (short text, long text), the texts of http.server's pages.
_STATUS_TEXTS = {status: (status.phrase, status.description)
                 for status in http.HTTPStatus.__members__.values()}


def _FormatCertificateDigest(der_cert):
  """SHA-1 of a DER certificate, as "AB:CD:..." (Ganeti's digest format)."""
  return ganeti_http.FormatCertificateDigest(der_cert)


class _HttpServerRequest(object):
  """The request as a Ganeti handler sees it.

  @ivar request_method: the method as sent ("GET", ...)
  @ivar request_path: the request target, query string included
  @ivar request_headers: case-insensitive headers (C{http.client.HTTPMessage})
  @ivar request_body: the body as bytes (C{b""} when there is none)
  @ivar request_sock: the client connection, or a stand-in where the
      backend has none to offer (FastCGI: see
      C{wsgi_application.DetachedClientSocket})
  @ivar resp_headers: headers the handler adds to a successful response
  @ivar private: free for the handler, kept from C{PreHandleRequest} to
      C{HandleRequest}
  """

  def __init__(self, method, path, headers, body, sock):
    self.request_method = method
    self.request_path = path
    self.request_headers = headers
    self.request_body = body
    self.request_sock = sock
    self.resp_headers = {}
    self.private = None


class HttpServerHandler(object):
  """Base class of the handlers Ganeti's daemons pass to C{HttpServer}."""

  def PreHandleRequest(self, req):
    """Hook run before L{HandleRequest} (authentication lives here)."""

  def HandleRequest(self, req):
    """Answer C{req}: return the response body as str or bytes.

    Raise an C{HttpException} to answer with an error status.
    """
    raise NotImplementedError()

  @staticmethod
  def FormatErrorMessage(values):
    """Return C{(content_type, body)} of an error response.

    @param values: dict with C{code} (int), C{message} (HTML-escaped text)
        and C{explain} (the status's long description)
    """
    return (DEFAULT_ERROR_CONTENT_TYPE, DEFAULT_ERROR_MESSAGE % values)


class ClientCertificatePolicy(object):
  """Decides whether a TLS client may be served, from its certificate.

  The TLS layer has already verified the chain; this adds Ganeti's
  application-level check of the leaf certificate's digest.
  """

  def __init__(self, verify_peer, verify_callback):
    self.verify_peer = verify_peer
    self.verify_callback = verify_callback

  def Check(self, der_cert):
    """Raise C{HttpForbidden} unless the certificate is acceptable.

    @param der_cert: the client's certificate in DER form, or None if the
        client sent none
    """
    if not self.verify_peer:
      return
    if der_cert is None:
      raise ganeti_http.HttpForbidden("No client certificate provided")
    if not self.verify_callback(_FormatCertificateDigest(der_cert)):
      raise ganeti_http.HttpForbidden(
        "Client certificate verification failed")


class IncomingRequest(object):
  """What a backend knows about a request before the body is read.

  @ivar method: request method
  @ivar path: request target with query string, in origin form (see
      L{OriginForm})
  @ivar headers: an C{http.client.HTTPMessage}
  @ivar read_body: C{read_body(n)} returns up to C{n} bytes of the body
  @ivar sock: connection object handed to the handler, or None
  @ivar tls: whether the connection is TLS
  @ivar peer_certificate: the client certificate (DER), or None
  @ivar chunked: whether C{read_body} returns a de-chunked body whose length
      was not announced (no Content-Length)
  """

  def __init__(self, method, path, headers, read_body, sock=None, tls=False,
               peer_certificate=None, chunked=False):
    self.method = method
    self.path = OriginForm(path)
    self.headers = headers
    self.read_body = read_body
    self.sock = sock
    self.tls = tls
    self.peer_certificate = peer_certificate
    self.chunked = chunked


#: An absolute-form target as lighttpd takes it (lower-case http or https,
#: a host without user information, then a path); it answers others 400.
_ABSOLUTE_FORM = re.compile(r"^https?://[^/?#@]+(?=/)")


def OriginForm(target):
  """The request target as a path (and query), the same on both backends.

  An absolute-form target ("http://host/x?y", which HTTP/1.1 servers must
  accept) loses its scheme and authority, as lighttpd does; a path starting
  with several slashes gets one, as Python's server does ("//x" would
  otherwise reach the handler as "/x" on one backend, "//x" on the other).
  Other targets are left as they are (lighttpd answers 400 to them).
  """
  match = _ABSOLUTE_FORM.match(target)
  if match:
    target = target[match.end():]
  if target.startswith("//"):
    target = "/" + target.lstrip("/")
  return target


class Response(object):
  """What a backend writes back: status, header pairs and a body.

  The body is bytes or a L{response_body.ResponseStream}.  C{headers}
  carries a Content-Length whenever the length is known: always for bytes,
  for a stream when the handler declared it or the stream knows it (a
  file); a backend must not send a stream of another length
  (L{response_body.CheckedLength}).

  @ivar content_length: the body's length, or None (a stream of unknown
      length: chunked, or delimited by closing the connection)
  """

  def __init__(self, status, headers, body):
    self.status = status
    self.body = body
    declared = [value for (name, value) in headers if _IsContentLength(name)]
    self.headers = [(name, value) for (name, value) in headers
                    if not _IsContentLength(name)]
    if isinstance(body, bytes):
      self.content_length = len(body)
    elif declared:
      self.content_length = int(declared[0])
    else:
      self.content_length = body.length
    if self.content_length is not None:
      self.headers.append((ganeti_http.HTTP_CONTENT_LENGTH,
                           str(self.content_length)))

  @property
  def reason(self):
    """The standard reason phrase of the status ("OK", "Not Found", ...)."""
    return _STATUS_TEXTS.get(self.status, ("Unknown", ))[0]


def _IsContentLength(name):
  return name.lower() == "content-length"


def HeadersFromPairs(pairs):
  """Build the case-insensitive header object handlers expect."""
  headers = http.client.HTTPMessage()
  for (name, value) in pairs:
    headers[name] = value
  return headers


def ErrorResponse(handler, err):
  """Turn an C{HttpException} into a response using the handler's page.

  If the handler's C{FormatErrorMessage} fails, or gives a content type
  that cannot be sent or a body that is neither str nor bytes, the default
  page is sent (and the failure logged): a client always gets an answer.
  """
  code = StatusOf(err)
  (short_text, long_text) = _STATUS_TEXTS.get(code, ("Unknown", "Unknown"))
  values = {
    "code": code,
    "message": html.escape(str(err.message or short_text)),
    "explain": long_text,
  }
  try:
    (content_type, body) = handler.FormatErrorMessage(values)
    content_type = str(content_type)
    problem = _HeaderProblem(ganeti_http.HTTP_CONTENT_TYPE, content_type)
    if problem:
      raise ValueError(problem)
    if not isinstance(body, (str, bytes)):
      raise TypeError("error page of type %s" % type(body).__name__)
  except Exception:  # pylint: disable=broad-except
    logging.exception("The handler's FormatErrorMessage failed; using the"
                      " default error page")
    (content_type, body) = HttpServerHandler.FormatErrorMessage(values)
  headers = [(ganeti_http.HTTP_CONTENT_TYPE, content_type)]
  for (name, value) in (err.headers or {}).items():
    problem = _HeaderProblem(str(name), str(value))
    if problem:
      logging.error("Not sending the error's %s", problem)
    else:
      headers.append((str(name), str(value)))
  return Response(code, headers, response_body.ToBytes(body))


def StatusOf(err):
  """The status an C{HttpException} is answered with: its C{code}, or 500
  if that is not a final HTTP status (C{HttpException} itself has None)."""
  code = err.code
  if isinstance(code, int) and not isinstance(code, bool) and (
      200 <= code <= 599):
    return code
  return ganeti_http.HttpInternalServerError.code


def StreamsRequestBody(handler):
  """Whether C{handler} reads its request body as a stream, as it arrives
  (C{STREAM_REQUEST_BODY}), rather than whole."""
  return getattr(handler, "STREAM_REQUEST_BODY", False)


class RequestPipeline(object):
  """Runs requests through a Ganeti handler.

  @ivar certificate_policy: a L{ClientCertificatePolicy}
  @ivar max_body_size: the body size limit in bytes
  """

  def __init__(self, certificate_policy, max_body_size=MAX_REQUEST_BODY_SIZE):
    self.certificate_policy = certificate_policy
    self.max_body_size = max_body_size

  def Run(self, handler, incoming, let_through=()):
    """Answer one request; never raises, but for C{let_through}.

    @param handler: the daemon's C{HttpServerHandler}
    @param incoming: an L{IncomingRequest}
    @param let_through: exception classes raised to the caller instead of
        answered with 500
    @rtype: L{Response}
    """
    try:
      return self._Run(handler, incoming)
    except ganeti_http.HttpException as err:
      error = err
      logging.log(logging.WARNING if StatusOf(err) >= 500 else logging.INFO,
                  "%s %s: %s %s", incoming.method, incoming.path, err.code,
                  err.message)
    except let_through:
      raise
    except Exception as err:  # pylint: disable=broad-except
      logging.exception("Error while handling %s %s", incoming.method,
                        incoming.path)
      error = ganeti_http.HttpInternalServerError(str(err))
    return ErrorResponse(handler, error)

  def _Run(self, handler, incoming):
    if incoming.method not in SUPPORTED_METHODS:
      raise ganeti_http.HttpNotImplemented(
        "Unsupported method (%r)" % incoming.method)
    if incoming.tls:
      self.certificate_policy.Check(incoming.peer_certificate)
    req = _HttpServerRequest(method=incoming.method, path=incoming.path,
                             headers=incoming.headers, body=None,
                             sock=incoming.sock)
    body = self._OpenBody(handler, incoming)
    if StreamsRequestBody(handler):
      req.request_body_stream = body
    else:
      req.request_body = body.read()
    handler.PreHandleRequest(req)
    result = response_body.FromHandlerResult(handler.HandleRequest(req))
    try:
      return Response(ganeti_http.HTTP_OK, _CheckedHeaders(req.resp_headers),
                      result)
    except BaseException:
      # The error page replaces the body: close it now (a generator's
      # finally blocks, a file), not whenever it is collected.
      if not isinstance(result, bytes):
        result.close()
      raise

  def BodyLimit(self, handler):
    """The largest request body C{handler} accepts, in bytes, or None.

    Buffered handlers get this server's size limit; streaming ones their
    own C{REQUEST_BODY_LIMIT}, if any.
    """
    if StreamsRequestBody(handler):
      return getattr(handler, "REQUEST_BODY_LIMIT", None)
    return self.max_body_size

  def _OpenBody(self, handler, incoming):
    """The request body as a L{request_body.RequestBodyStream}."""
    limit = self.BodyLimit(handler)
    if incoming.chunked:
      return request_body.RequestBodyStream(incoming.read_body, None, limit)
    length = request_body.ParseContentLength(
      incoming.headers.get(ganeti_http.HTTP_CONTENT_LENGTH), limit)
    return request_body.RequestBodyStream(incoming.read_body, length, limit)


#: Characters of a header name (RFC 9110's "token").
_TOKEN_CHARACTERS = frozenset(string.ascii_letters + string.digits +
                              "!#$%&'*+-.^_`|~")

#: Control characters a header value may not hold (all but the tab).
_FORBIDDEN_IN_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")

#: Response headers a handler may not set (lower case): they frame the
#: response or manage the connection, or lighttpd takes them as
#: instructions (the fastcgi backend would act on them or drop them, the
#: legacy one pass them to the client).
_RESERVED_RESPONSE_HEADERS = frozenset([
  "status", "transfer-encoding", "connection", "keep-alive", "upgrade",
  "proxy-connection", "x-sendfile", "x-sendfile2", "x-lighttpd-send-file",
  "x-lighttpd-send-tempfile"])


def IsValidField(name, value):
  """Whether a header field is well formed: its name a token, its value
  free of control characters but the tab (RFC 9110)."""
  return bool(name and _TOKEN_CHARACTERS.issuperset(name)
              and not _FORBIDDEN_IN_VALUE.search(value))


def _HeaderProblem(name, value):
  """Why a response header cannot be sent, or None if it can.

  A CR or LF would let a value start a header (or a body) of its own, other
  control characters and names that are not tokens are refused or
  mangled by clients and lighttpd, and HTTP/1.1 header text is Latin-1;
  all would otherwise fail differently on each backend.
  """
  if not IsValidField(name, value):
    return "invalid response header %r: %r" % (name, value)
  if name.lower() in _RESERVED_RESPONSE_HEADERS:
    return "response header %r, which only the server may set" % name
  if _IsContentLength(name) and not (value.isdigit() and value.isascii()):
    return "invalid Content-Length %r" % value
  try:
    (name + value).encode("latin-1")
  except UnicodeEncodeError:
    return "response header that is not Latin-1: %r" % name
  return None


def _CheckedHeaders(headers):
  """Return the handler's response headers as pairs.

  @raise ganeti.http.HttpInternalServerError: one cannot be sent
  """
  pairs = [(str(name), str(value)) for (name, value) in headers.items()]
  for (name, value) in pairs:
    problem = _HeaderProblem(name, value)
    if problem:
      raise ganeti_http.HttpInternalServerError("Handler set an " + problem)
  return pairs
