"""Server side of RPC feedback: negotiation and framing, on every backend."""

import json

import pytest

from ganeti.http import feedback
from ganeti.http import server as http_server


class ProgressHandler(http_server.HttpServerHandler):
  """A method that reports three steps, then returns noded-style."""

  def __init__(self):
    http_server.HttpServerHandler.__init__(self)
    self.finished = []

  def _Method(self):
    try:
      for step in range(3):
        yield {"step": step, "note": "copying \x03 block"}
      return [True, "copied"]
    finally:
      self.finished.append(True)

  def HandleRequest(self, req):
    return feedback.RespondWithFeedback(req, self._Method())


def test_client_that_asks_gets_the_stream(serve):
  handler = ProgressHandler()
  (status, headers, raw) = serve(handler).Request(
    "POST", "/copy", body=b"{}",
    headers={"Accept": "application/json, " + feedback.FEEDBACK_CONTENT_TYPE})
  assert status == 200
  assert headers["Content-Type"] == feedback.FEEDBACK_CONTENT_TYPE
  decoder = feedback.FeedbackDecoder()
  frames = decoder.Feed(raw)
  assert [frame.value for frame in frames[:-1]] == [
    {"step": step, "note": "copying \x03 block"} for step in range(3)]
  assert feedback.ResultBody(decoder.Finish()) == '[true, "copied"]\n'
  assert handler.finished == [True]


def test_other_clients_get_the_plain_result(serve):
  handler = ProgressHandler()
  (status, headers, raw) = serve(handler).Request("POST", "/copy", body=b"{}")
  assert status == 200
  assert headers.get("Content-Type") != feedback.FEEDBACK_CONTENT_TYPE
  assert json.loads(raw) == [True, "copied"]
  assert raw == b'[true, "copied"]\n'
  assert handler.finished == [True]


@pytest.mark.parametrize("accept_lines,streamed", [
  (["application/json", feedback.FEEDBACK_CONTENT_TYPE], True),
  ([feedback.FEEDBACK_CONTENT_TYPE + ";q=0"], False),
  ([feedback.FEEDBACK_CONTENT_TYPE + "; Q=0.000"], False),
  ([feedback.FEEDBACK_CONTENT_TYPE + ";q=0.5"], True),
], ids=["two-lines", "q0", "q0-spelled-out", "q-half"])
def test_feedback_negotiation(serve, accept_lines, streamed):
  """Every Accept line counts (lighttpd joins them into one), and q=0
  refuses the stream, identically on both backends."""
  running = serve(ProgressHandler())
  connection = running.Connection()
  connection.putrequest("POST", "/copy")
  for line in accept_lines:
    connection.putheader("Accept", line)
  connection.putheader("Content-Length", "2")
  connection.endheaders(b"{}")
  response = connection.getresponse()
  raw = response.read()
  connection.close()
  assert response.status == 200
  assert (response.getheader("Content-Type") ==
          feedback.FEEDBACK_CONTENT_TYPE) == streamed
  assert (raw == b'[true, "copied"]\n') != streamed
