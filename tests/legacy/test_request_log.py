"""The request log: one INFO line per request, in Ganeti 3.0's format, on
both backends, with what the client sent escaped (issues 11 and 14); also
for the requests lighttpd refuses itself (on fastcgi the daemon reads
them from lighttpd's access log)."""

import logging
import re

import pytest

from ganeti import http as ganeti_http
from ganeti.http.core import request_log
from tests.legacy.test_handler_contract import JsonErrorHandler
from tests.legacy.test_handler_contract import RecordingHandler
from tests.raw_http import StatusAndClientPort

#: Any control character a terminal could act on (C0, DEL, C1).
_RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _Exchange(port, request):
  """Send raw C{request}; return C{(status, client port)}.

  The request asks the server to close the connection after answering
  (C{Connection: close} after its C{Host} field), so that its answer ends
  with the connection, not with the server's keep-alive timeout.
  """
  request = request.replace(b"\r\nHost: n\r\n",
                            b"\r\nHost: n\r\nConnection: close\r\n", 1)
  return StatusAndClientPort(port, request)


def _RawControl(caplog):
  """The logged messages holding a raw control character."""
  return [message for message in caplog.messages
          if _RAW_CONTROL.search(message)]


def RequestLines(caplog):
  """The request lines logged (from 127.0.0.1), in order."""
  return [record.getMessage() for record in caplog.records
          if record.levelno == logging.INFO and
          record.getMessage().startswith("127.0.0.1:")]


def _LoggedRequests(running, caplog):
  """The request lines logged once the server has stopped: lighttpd writes
  its access log in batches, the last when it exits, and a line logged
  twice would be there by then."""
  running.server.Stop()
  return RequestLines(caplog)


@pytest.mark.parametrize(("request_line", "status"), [
  (b"GET /x?y=1 HTTP/1.1", 200),
  (b"POST /version HTTP/1.0", 200),
  (b"PUT /a HTTP/1.1", 200),
])
def test_each_request_logged_as_ganeti_30_does(serve, caplog, request_line,
                                                status):
  caplog.set_level(logging.INFO)
  running = serve(RecordingHandler())
  (got, client_port) = _Exchange(
    running.port, request_line + b"\r\nHost: n\r\nContent-Length: 0\r\n\r\n")
  assert got == status
  assert _LoggedRequests(running, caplog) == [
    "127.0.0.1:%d %s %d" % (client_port, request_line.decode(), status)]


def test_error_answers_logged_with_their_status(serve, caplog):
  caplog.set_level(logging.INFO)
  handler = JsonErrorHandler()
  handler.error = ganeti_http.HttpNotFound()
  running = serve(handler)
  (got, client_port) = _Exchange(
    running.port, b"GET /missing HTTP/1.1\r\nHost: n\r\n\r\n")
  assert got == 404
  assert ("127.0.0.1:%d GET /missing HTTP/1.1 404" % client_port
          in _LoggedRequests(running, caplog))


@pytest.mark.parametrize("character", [b"\x1b", b"\r", b"\x00", b"\x7f"],
                         ids=["ESC", "CR", "NUL", "DEL"])
def test_control_characters_of_the_request_line_never_reach_the_log_raw(
    serve, caplog, character):
  caplog.set_level(logging.DEBUG)
  running = serve(RecordingHandler())
  request_line = b"GET /a" + character + b"[2Jb HTTP/1.1"
  (got, client_port) = _Exchange(running.port,
                                 request_line + b"\r\nHost: n\r\n\r\n")
  assert got == 400  # both refuse it (lighttpd's url-ctrls-reject)
  # fastcgi: lighttpd answers it, the daemon logs it from lighttpd's
  # access log, escaped as the legacy backend escapes it.
  assert _LoggedRequests(running, caplog) == [
    "127.0.0.1:%d GET /a\\x%02x[2Jb HTTP/1.1 400" % (client_port,
                                                     ord(character))]
  assert not _RawControl(caplog)


#: Requests lighttpd answers itself, never passing them to the daemon: the
#: request (without its Host field's line end, which _Exchange completes),
#: the status both backends answer and the request line logged.
_REFUSED = {
  "malformed-field": (b"GET /x HTTP/1.1\r\nHost: n\r\nBad Name: v\r\n\r\n",
                      400, "GET /x HTTP/1.1"),
  "malformed-request-line": (b"GARBAGE\r\nHost: n\r\n\r\n", 400, "None"),
  "no-host": (b"GET /y?z HTTP/1.1\r\nX: 1\r\n\r\n", 400, "GET /y?z HTTP/1.1"),
  "body-over-limit": (b"POST /big HTTP/1.1\r\nHost: n\r\n"
                      b"Content-Length: 10485761\r\n\r\n",
                      413, "POST /big HTTP/1.1"),
  # lighttpd refuses a head over 8 KiB before reading its request line;
  # the stdlib a field line over 64 KiB.
  "head-too-large": (b"GET /x HTTP/1.1\r\nHost: n\r\nX-Big: " +
                     b"a" * 70000 + b"\r\n\r\n", 431, "None"),
}


@pytest.mark.parametrize("case", sorted(_REFUSED))
def test_requests_lighttpd_refuses_logged_alike(serve, caplog, case):
  (request, status, request_line) = _REFUSED[case]
  running = serve(RecordingHandler())
  (got, client_port) = _Exchange(running.port, request)
  assert got == status
  assert _LoggedRequests(running, caplog) == [
    "127.0.0.1:%d %s %d" % (client_port, request_line, status)]


def test_c1_control_character_reaches_the_handler_and_is_logged_escaped(
    serve, caplog):
  # lighttpd passes bytes 0x80-0x9f (CSI is 0x9b); both backends serve it.
  caplog.set_level(logging.INFO)
  running = serve(RecordingHandler())
  (got, client_port) = _Exchange(
    running.port, b"GET /a\x9b2Jb HTTP/1.1\r\nHost: n\r\n\r\n")
  assert got == 200
  assert _LoggedRequests(running, caplog) == [
    "127.0.0.1:%d GET /a\\x9b2Jb HTTP/1.1 200" % client_port]
  assert not _RawControl(caplog)


def test_handler_error_message_logged_escaped(serve, caplog):
  caplog.set_level(logging.INFO)
  handler = JsonErrorHandler()
  handler.error = ganeti_http.HttpBadRequest("bad name 'x\x1b[2J\r\nFAKE'")
  running = serve(handler)
  (got, _) = _Exchange(running.port, b"GET / HTTP/1.1\r\nHost: n\r\n\r\n")
  assert got == 400
  assert "bad name 'x\\x1b[2J\\x0d\\x0aFAKE'" in caplog.text
  assert not _RawControl(caplog)


def test_escaped_marks_backslashes_so_escapes_cannot_be_forged():
  assert request_log.Escaped("a\\x1b\x1b") == "a\\\\x1b\\x1b"
  assert request_log.Escaped("\x85\xa0\xe9") == "\\x85\xa0\xe9"
