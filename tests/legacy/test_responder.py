"""server.HttpResponder: Ganeti 3.0/3.1's in-process request runner."""

import json

from ganeti import http as ganeti_http
from ganeti.http import server as http_server


class EchoHandler(http_server.HttpServerHandler):
  """Answers with what it saw; /stream in two chunks; /missing is a 404;
  /crash raises a plain error."""

  def HandleRequest(self, req):
    if req.request_path == "/missing":
      raise ganeti_http.HttpNotFound("no such thing")
    if req.request_path == "/crash":
      raise KeyError("not an HTTP error")
    if req.request_path == "/stream":
      return iter([b"one ", "two"])
    return json.dumps({
      "method": req.request_method,
      "path": req.request_path,
      "type": req.request_headers.get("Content-Type"),
      "body": req.request_body.decode(),
    })


def _Respond(method, path, body=None, headers=None,
             version=ganeti_http.HTTP_1_0):
  request_msg = ganeti_http.HttpMessage()
  request_msg.start_line = ganeti_http.HttpClientToServerStartLine(
    method, path, version)
  request_msg.headers = headers
  request_msg.body = body
  reader = object()
  answer = http_server.HttpResponder(EchoHandler())(
    lambda: (request_msg, reader))
  return (request_msg, reader, answer)


def test_request_is_answered_like_one_from_a_client():
  (request_msg, reader, answer) = _Respond(
    "PUT", "/2/x?a=1", body="payload",
    headers={"Content-Type": "application/json"})
  (returned_msg, returned_reader, force_close, response_msg) = answer
  assert (returned_msg, returned_reader, force_close) == (request_msg,
                                                          reader, False)
  assert str(response_msg.start_line) == "HTTP/1.0 200 OK"
  assert json.loads(response_msg.body) == {
    "method": "PUT", "path": "/2/x?a=1", "type": "application/json",
    "body": "payload"}
  assert response_msg.headers["Content-Length"] == str(
    len(response_msg.body))
  assert response_msg.headers["Connection"] == "close"
  assert response_msg.headers["Server"] == ganeti_http.HTTP_GANETI_VERSION


def test_streamed_result_comes_back_whole():
  (_, _, answer) = _Respond("GET", "/stream")
  assert answer[3].body == b"one two"


def test_http_error_is_an_error_response():
  (_, _, (request_msg, reader, force_close, response_msg)) = _Respond(
    "GET", "/missing")
  assert (request_msg.start_line, reader, force_close) == (None, None, True)
  assert response_msg.start_line.code == 404
  assert b"no such thing" in response_msg.body


def test_http11_request_without_host_is_a_400():
  (_, _, answer) = _Respond("GET", "/", version=ganeti_http.HTTP_1_1)
  assert answer[3].start_line.code == 400
  (_, _, answer) = _Respond("GET", "/", version=ganeti_http.HTTP_1_1,
                            headers={"Host": "x"})
  assert answer[3].start_line.code == 200


def test_other_handler_errors_are_a_500():
  """As in Ganeti 3.0 (whose RAPI test helper also lets its own
  RapiTestResult through: tests/legacy/test_real_ganeti_handlers.py)."""
  (_, _, (_, _, force_close, response_msg)) = _Respond("GET", "/crash")
  assert force_close
  assert response_msg.start_line.code == 500
  assert b"not an HTTP error" in response_msg.body
