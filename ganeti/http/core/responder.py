"""Answering a request message in process, without a connection.

Ganeti 3.0 and 3.1 ship a RAPI test helper (C{ganeti.rapi.testutils}) that
hands request messages to C{server.HttpResponder(handler)} and reads the
response messages it returns.  This module provides that class on top of
the shared L{pipeline}, so such a request is handled as one from a client.
"""

import email.utils
import io

from ganeti import http as ganeti_http
from ganeti.http.core import pipeline
from ganeti.http.core import response_body


class HttpResponder(object):
  """C{HttpResponder(handler)(read_request)} answers one request message.

  C{read_request()} returns C{(request_msg, reader)}: an
  L{ganeti.http.HttpMessage} with an L{ganeti.http.HttpClientToServerStartLine},
  headers (a mapping or an C{email.message.Message}) and the whole body (str
  or bytes); C{reader} is handed back untouched.

  The call returns C{(request_msg, reader, force_close, response_msg)}, where
  C{response_msg} is an L{ganeti.http.HttpMessage} with an
  L{ganeti.http.HttpServerToClientStartLine}, a dict of headers and the body
  as bytes.  After an error (any status but 200) the request message comes
  back empty, C{reader} as None and C{force_close} true, as in Ganeti 3.0.
  As there, the handler's errors are answered (an C{HttpException} with its
  status, others with 500) except Ganeti's C{errors.RapiTestResult}, which
  the RAPI test helper raises to stop at the LUXI call: that reaches the
  caller.
  """

  def __init__(self, handler):
    self._handler = handler
    self._pipeline = pipeline.RequestPipeline(
      pipeline.ClientCertificatePolicy(False, None))

  def __call__(self, read_request):
    (request_msg, reader) = read_request()
    response = self._Answer(request_msg)
    response_msg = ganeti_http.HttpMessage()
    response_msg.start_line = ganeti_http.HttpServerToClientStartLine(
      version=request_msg.start_line.version, code=response.status,
      reason=response.reason)
    response_msg.headers = dict(response.headers)
    response_msg.headers.update({
      ganeti_http.HTTP_CONNECTION: "close",
      ganeti_http.HTTP_DATE: email.utils.formatdate(usegmt=True),
      ganeti_http.HTTP_SERVER: ganeti_http.HTTP_GANETI_VERSION,
    })
    response_msg.body = _WholeBody(response.body)
    if response.status != ganeti_http.HTTP_OK:
      return (ganeti_http.HttpMessage(), None, True, response_msg)
    return (request_msg, reader, False, response_msg)

  def _Answer(self, request_msg):
    start_line = request_msg.start_line
    headers = pipeline.HeadersFromPairs(
      list((request_msg.headers or {}).items()))
    if (start_line.version == ganeti_http.HTTP_1_1 and
        ganeti_http.HTTP_HOST not in headers):
      return pipeline.ErrorResponse(
        self._handler, ganeti_http.HttpBadRequest("Missing Host header"))
    body = response_body.ToBytes(request_msg.body or b"")
    if ganeti_http.HTTP_CONTENT_LENGTH not in headers:
      # The message holds the whole body: its length is known.
      headers[ganeti_http.HTTP_CONTENT_LENGTH] = str(len(body))
    incoming = pipeline.IncomingRequest(
      method=start_line.method, path=start_line.path, headers=headers,
      read_body=io.BytesIO(body).read)
    return self._pipeline.Run(self._handler, incoming,
                              let_through=_RapiTestResult())


def _RapiTestResult():
  """Ganeti's C{errors.RapiTestResult} as a tuple, empty without Ganeti
  (this package must import without the rest of Ganeti)."""
  try:
    from ganeti import errors  # pylint: disable=import-outside-toplevel
  except ImportError:
    return ()
  return (errors.RapiTestResult, )


def _WholeBody(body):
  """A response body as bytes (a stream read to its end, then closed)."""
  if isinstance(body, bytes):
    return body
  try:
    return b"".join(body)
  finally:
    body.close()
