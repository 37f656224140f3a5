"""A corpus of raw requests, each with the answer both backends must give.

Each C{raw_requests/NAME.http} file is one request.  Its first lines say
what is expected:

  # expect: STATUS [JSON]

where JSON, if given, holds fields the handler must have seen (those of
L{RecordingHandler}'s answer: method, path, body, content_type, custom).
A line C{# expect BACKEND: ...} overrides it for one backend.  The rest is
the request: newlines in the file are ignored, C{\\r\\n} and other escapes
are written out, as in gunicorn's request corpus.
"""

import codecs
import json
import os
import socket

import pytest

from tests.legacy.test_handler_contract import RecordingHandler

_CORPUS = os.path.join(os.path.dirname(__file__), "raw_requests")


def _Cases():
  return sorted(name[:-len(".http")] for name in os.listdir(_CORPUS)
                if name.endswith(".http"))


def _Load(name):
  """C{(expectations by backend or None for all, request bytes)}."""
  with open(os.path.join(_CORPUS, name + ".http")) as handle:
    lines = handle.read().split("\n")
  expected = {}
  while lines and lines[0].startswith("# expect"):
    (key, _, value) = lines.pop(0)[len("# expect"):].partition(":")
    (status, _, seen) = value.strip().partition(" ")
    expected[key.strip() or None] = (int(status),
                                     json.loads(seen) if seen else {})
  text = "".join(lines)
  return (expected, codecs.decode(text, "unicode_escape").encode("latin-1"))


def _Exchange(port, request):
  """Send C{request}; return C{(status, body)} of the answer."""
  with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
    sock.sendall(request)
    received = b""
    while True:
      try:
        data = sock.recv(65536)
      except ConnectionResetError:
        break  # after the answer: the request was not read to its end
      if not data:
        break
      received += data
  while received.startswith(b"HTTP/1.1 100 "):  # interim answers
    received = received.split(b"\r\n\r\n", 1)[1]
  (head, _, body) = received.partition(b"\r\n\r\n")
  assert head.startswith(b"HTTP/1."), received[:200]
  return (int(head.split(b" ", 2)[1]), body)


@pytest.mark.parametrize("name", _Cases())
def test_raw_request(serve, backend, name):
  (expected, request) = _Load(name)
  (status, seen) = expected.get(backend, expected[None])
  running = serve(RecordingHandler())
  (got_status, body) = _Exchange(running.port, request)
  assert got_status == status, body[:300]
  if seen:
    answer = json.loads(body)
    assert dict((key, answer[key]) for key in seen) == seen
