"""A corpus of raw requests, each with the answer both backends must give.

Each C{raw_requests/NAME.http} file is one request.  Its first lines say
what is expected:

  # expect: STATUS [JSON]

where JSON, if given, holds fields the handler must have seen (those of
L{RecordingHandler}'s answer: method, path, body, content_type, custom).
A line C{# expect BACKEND: ...} overrides it for one backend.  The rest is
the request: newlines in the file are ignored, C{\\r\\n} and other escapes
are written out, as in gunicorn's request corpus.

A request holding a placeholder of L{_FAMILIES} (C{{CTL}}: each control
character; C{{SEP}}: each character RFC 9110 allows in no header name)
is a family of cases, one per character, named C{NAME[\\xHH]}; a line
C{# expect \\xHH: ...} overrides the expectation for one character.
"""

import codecs
import json
import os
import socket

import pytest

from ganeti.http import server as http_server
from tests.conftest import BACKENDS
from tests.legacy.test_handler_contract import RecordingHandler

_CORPUS = os.path.join(os.path.dirname(__file__), "raw_requests")


#: Placeholder -> the characters it stands for, one case each.
_FAMILIES = {
  "{CTL}": [chr(code) for code in range(0x20)] + ["\x7f"],
  "{SEP}": list('"(),/;<=>?@[\\]{} '),
}


def _Cases():
  cases = []
  for name in sorted(os.listdir(_CORPUS)):
    if not name.endswith(".http"):
      continue
    name = name[:-len(".http")]
    (_, text) = _Read(name)
    placeholders = [key for key in _FAMILIES if key in text]
    cases.extend([name] if not placeholders else
                 ["%s[\\x%02x]" % (name, ord(char))
                  for char in _FAMILIES[placeholders[0]]])
  return cases


def _Read(name):
  """C{(expectation lines, request text)} of a corpus file."""
  with open(os.path.join(_CORPUS, name + ".http")) as handle:
    lines = handle.read().split("\n")
  header = []
  while lines and lines[0].startswith("# expect"):
    header.append(lines.pop(0))
  return (header, "".join(lines))


def _Load(case):
  """C{(expectations by backend or None for all, request bytes)}."""
  (name, _, char) = case.partition("[")
  (header, text) = _Read(name)
  text = codecs.decode(text, "unicode_escape")
  char = char.rstrip("]")
  if char:
    for placeholder in _FAMILIES:
      text = text.replace(placeholder, chr(int(char[2:], 16)))
  expected = {}
  for line in header:
    (key, _, value) = line[len("# expect"):].partition(":")
    (status, _, seen) = value.strip().partition(" ")
    key = key.strip() or None
    if key and key.startswith("\\x"):
      if key != char:
        continue
      key = None  # for this character, on every backend
    expected[key] = (int(status), json.loads(seen) if seen else {})
  return (expected, text.encode("latin-1"))


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


@pytest.fixture(scope="module", params=BACKENDS)
def corpus_server(request, tmp_path_factory):
  """C{(backend, port)} of one server per backend for the whole corpus
  (a server per case would start a lighttpd for each)."""
  backend = request.param
  with pytest.MonkeyPatch.context() as patch:
    patch.setenv("GANETI_HTTP_BACKEND", backend)
    patch.setenv("GANETI_HTTP_BACKEND_CONFIG",
                 str(tmp_path_factory.mktemp("corpus") / "none.conf"))
    server = http_server.HttpServer("127.0.0.1", 0, RecordingHandler(),
                                    daemon_name="test")
    assert server.backend == backend
    server.Start()
    try:
      yield (backend, server.server_address[1])
    finally:
      server.Stop()


@pytest.mark.parametrize("name", _Cases())
def test_raw_request(corpus_server, name):
  (backend, port) = corpus_server
  (expected, request) = _Load(name)
  (status, seen) = expected.get(backend, expected[None])
  (got_status, body) = _Exchange(port, request)
  assert got_status == status, body[:300]
  if seen:
    answer = json.loads(body)
    assert dict((key, answer[key]) for key in seen) == seen


class _HeadersHandler(http_server.HttpServerHandler):
  """Answers with every header the handler saw, as JSON pairs."""

  def HandleRequest(self, req):
    return json.dumps(list(req.request_headers.items()))


_SEEN_HEADERS = {}


@pytest.mark.parametrize("fields", [
  b"X-Auth: a\r\nX_Auth: b\r\nx-auth: c\r\n",
  b"Cookie: a=1\r\nCookie: b=2\r\nAuthorization: Basic x\r\n"
  b"Authorization: Basic y\r\n",
  b"Content_Type: a/b\r\nContent_Length: 9\r\nProxy: p\r\nX-Empty:\r\n",
  b"If-None-Match: a\r\nIf-None-Match: b\r\nX.Dot: d\r\nHost: NODE1\r\n",
  b"X-Fold:\r\n a\r\n\tb \r\nTE: trailers\r\nX-Obs: \xe9\x9b\r\n",
], ids=["spellings", "repeats", "aliases", "first-wins", "folds"])
def test_handler_sees_the_same_headers_on_both_backends(serve, backend,
                                                        fields):
  """Every header the handler sees, spelling, order and value, is the
  same whichever backend serves it (the fastcgi one sees what lighttpd
  passes on)."""
  running = serve(_HeadersHandler())
  (status, body) = _Exchange(running.port,
                             b"POST / HTTP/1.1\r\nHost: node1\r\n" + fields +
                             b"Content-Length: 2\r\nConnection: close\r\n"
                             b"\r\nab")
  assert status == 200, body
  seen = _SEEN_HEADERS.setdefault(fields, {})
  seen[backend] = json.loads(body)
  assert len(set(json.dumps(headers) for headers in seen.values())) == 1, seen
