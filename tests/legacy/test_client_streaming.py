"""Tests of the pycurl client's streaming: feedback, file uploads, downloads.

The first part hands the client's curl callbacks byte sequences directly,
split anywhere, cut short or malformed, the way libcurl would call them.
The second talks to a real server over TLS on both backends.
"""

import hashlib
import io
import itertools
import json
import os
import random
import threading
import time

import pycurl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganeti import http
from ganeti.http import client
from ganeti.http import client_bodies
from ganeti.http import feedback
from ganeti.http import server as http_server
from tests.legacy.test_client import _CurlConfig

_FEEDBACK_HEADERS = ["HTTP/1.1 200 OK",
                     "Content-Type: %s" % feedback.FEEDBACK_CONTENT_TYPE,
                     "Transfer-Encoding: chunked"]

# What curl reports after a write callback aborted the transfer
_CURL_WRITE_ERROR = "Error 23: Failure writing output to destination"


def _Stream(messages, result):
  """The body a server sends for C{messages} followed by C{result}."""
  return (b"".join(feedback.EncodeFeedback(m) for m in messages) +
          feedback.EncodeResult(result))


class _FakeCurl(object):
  """Records options; answers getinfo with a status and a local address."""

  def __init__(self, status=200):
    self.opts = {}
    self.info = {pycurl.RESPONSE_CODE: status, pycurl.LOCAL_IP: "127.0.0.1",
                 pycurl.LOCAL_PORT: 40000}

  def setopt(self, option, value):
    self.opts[option] = value

  def getinfo(self, what):
    return self.info[what]


class _Transfer(object):
  """Drives a request's callbacks as libcurl does: headers, then body.

  @ivar received: the messages given to the request's feedback function
  @ivar delivered: after each write, how many messages had been received
  @ivar returns: what each write callback call returned

  The feedback function raises for the message C{raise_on}.
  """

  def __init__(self, raise_on=NotImplemented, **kwargs):
    self.received = []
    self.delivered = []
    self.returns = []
    self._raise_on = raise_on
    kwargs.setdefault("feedback_fn", self._Feedback)
    self.req = client.HttpClientRequest("192.0.2.1", 1811, "POST", "/rpc",
                                        **kwargs)
    self.curl = _FakeCurl()
    self.pending = client._StartRequest(self.curl, self.req)

  def _Feedback(self, message):
    if message == self._raise_on:
      raise RuntimeError("cannot show %r" % message)
    self.received.append(message)

  def Headers(self, lines):
    """Call the header callback with C{lines} and the blank line after."""
    for line in lines + [""]:
      self.curl.opts[pycurl.HEADERFUNCTION](("%s\r\n" % line).encode("ascii"))

  def Write(self, chunks):
    """Call the write callback with each chunk until one aborts."""
    for chunk in chunks:
      ret = self.curl.opts[pycurl.WRITEFUNCTION](chunk)
      self.returns.append(ret)
      self.delivered.append(len(self.received))
      if ret is not None and ret != len(chunk):
        break

  def Run(self, chunks, headers=None, errmsg=None):
    """Headers, body, end; C{errmsg} is curl's, as after an abort if any.

    @return: the request
    """
    self.Headers(_FEEDBACK_HEADERS if headers is None else headers)
    self.Write(chunks)
    if errmsg is None and client_bodies.WRITE_ABORT in self.returns:
      errmsg = _CURL_WRITE_ERROR
    self.pending.Done(errmsg)
    return self.req


def _Split(data, cuts):
  """Split C{data} at the offsets in C{cuts}."""
  bounds = [0] + sorted(set(cuts)) + [len(data)]
  return [data[a:b] for (a, b) in zip(bounds, bounds[1:])]


def _FramesEndingBy(data, offset):
  """How many frames of C{data} are complete in its first C{offset} bytes."""
  return data[:offset].count(feedback.SEPARATOR)


_JSON = st.recursive(
  st.none() | st.booleans() | st.integers() |
  st.floats(allow_nan=False) |
  st.text(alphabet=st.sampled_from("ab\x03\x00\"\\\u00e9\u2603\U0001d11e")),
  lambda children: st.lists(children, max_size=3) |
  st.dictionaries(st.text(max_size=3), children, max_size=3),
  max_leaves=8)


class TestFeedbackDecoding:
  @settings(max_examples=200, deadline=None)
  @given(st.lists(_JSON, max_size=5), _JSON, st.data())
  def testSplitAnywhere(self, messages, result, data):
    body = _Stream(messages, result)
    cuts = data.draw(st.lists(st.integers(0, len(body)), max_size=8))
    chunks = _Split(body, cuts)
    transfer = _Transfer()
    req = transfer.Run(chunks)

    assert transfer.received == messages
    assert set(transfer.returns) <= {None}
    # Each message was delivered by the write that completed its frame
    ends = itertools.accumulate(len(chunk) for chunk in chunks)
    assert transfer.delivered == [min(_FramesEndingBy(body, end),
                                      len(messages)) for end in ends]
    assert (req.success, req.error, req.resp_status_code) == (True, None, 200)
    assert req.resp_body == json.dumps(result) + "\n"

  def testOneByteAtATime(self):
    body = _Stream(["Copying disk 0", {"disk": 0, "percent": 50}],
                   [True, "done"])
    transfer = _Transfer()
    req = transfer.Run([body[i:i + 1] for i in range(len(body))])
    assert transfer.received == ["Copying disk 0", {"disk": 0, "percent": 50}]
    assert req.resp_body == '[true, "done"]\n'

  def testSeveralMessagesInOneRead(self):
    transfer = _Transfer()
    req = transfer.Run([_Stream(list(range(10)), None)])
    assert transfer.received == list(range(10))
    assert transfer.delivered == [10]
    assert (req.success, req.resp_body) == (True, "null\n")

  @pytest.mark.parametrize("cut", range(1, 12))
  def testSeparatorInsideString(self, cut):
    # The encoder escapes ETX; another sender may write UTF-8 and spaces
    body = (feedback.EncodeFeedback("ETX \x03 inside") +
            '{"feedback": "caf\u00e9 \\u0003"}\x03'.encode("utf-8") +
            feedback.EncodeResult("a\x03b"))
    start = body.index(b"\\u0003")
    transfer = _Transfer()
    req = transfer.Run(_Split(body, [start + cut // 2, start + cut]))
    assert transfer.received == ["ETX \x03 inside", "caf\u00e9 \x03"]
    assert req.resp_body == json.dumps("a\x03b") + "\n"

  @pytest.mark.parametrize("body, messages", [
    (b"", []),
    (b'{"feedback":1}\x03', [1]),
    (b'{"feedback":1}\x03{"feedb', [1]),
    (b'{"feedback":1}\x03{"result":[tr', [1]),
    (b'{"result":true}', []),
    ])
  def testTruncated(self, body, messages):
    transfer = _Transfer()
    req = transfer.Run(_Split(body, [3, 9]))
    assert transfer.received == messages
    assert req.success is False
    assert req.error.startswith("Feedback stream truncated")
    assert (req.resp_status_code, req.resp_body) == (200, "")

  def testCurlErrorMidStream(self):
    transfer = _Transfer()
    req = transfer.Run([b'{"feedback":1}\x03{"res'],
                       errmsg="Error 18: transfer closed with outstanding"
                       " read data remaining")
    assert transfer.received == [1]
    assert (req.success, req.resp_body) == (False, "")
    assert req.error.startswith("Error 18:")

  def testCurlErrorAfterTheFinalFrame(self):
    """The frames decide: a stream complete up to its final frame is a
    success even if the transport then fails (no last chunk)."""
    transfer = _Transfer()
    req = transfer.Run([b'{"feedback":1}\x03{"result":[true,"done"]}\x03'],
                       errmsg="Error 18: transfer closed with outstanding"
                       " read data remaining")
    assert transfer.received == [1]
    assert (req.success, req.error) == (True, None)
    assert json.loads(req.resp_body) == [True, "done"]

  @pytest.mark.parametrize("bad, why", [
    (b"not json", "is not JSON"),
    (b'{"progress":1}', "expected exactly one of"),
    (b'["feedback",1]', "is a JSON array"),
    (b"", "is empty"),
    (b'{"error":42}', "expected a string"),
    ])
  def testInvalidFrame(self, bad, why):
    body = (b'{"feedback":1}\x03' + bad + b'\x03{"feedback":2}\x03'
            b'{"result":3}\x03')
    transfer = _Transfer()
    req = transfer.Run([body])
    # The frame before the bad one is still delivered, none after it
    assert transfer.received == [1]
    assert transfer.returns == [client_bodies.WRITE_ABORT]
    assert req.success is False
    assert req.error.startswith("Feedback frame 2 (at byte 15")
    assert why in req.error
    assert (req.resp_status_code, req.resp_body) == (200, "")

  def testDataAfterFinalFrame(self):
    transfer = _Transfer()
    req = transfer.Run([b'{"result":1}\x03', b'{"feedback":2}\x03'])
    assert transfer.returns == [None, client_bodies.WRITE_ABORT]
    assert transfer.received == []
    assert req.success is False
    assert "after the final frame" in req.error

  def testRemoteError(self):
    transfer = _Transfer()
    body = (feedback.EncodeFeedback("Copying disk 0") +
            feedback.EncodeError("No space left on device"))
    req = transfer.Run(_Split(body, [5]))
    assert transfer.received == ["Copying disk 0"]
    assert (req.success, req.resp_status_code, req.resp_body) == \
      (False, 200, "")
    assert req.error == "Remote method failed: No space left on device"

  def testFeedbackFunctionRaises(self, caplog):
    transfer = _Transfer(raise_on="second")
    body = _Stream(["first", "second", "third"], True)
    first_end = body.index(feedback.SEPARATOR) + 1
    req = transfer.Run([body[:first_end], body[first_end:]])
    assert transfer.received == ["first"]
    assert transfer.returns == [None, client_bodies.WRITE_ABORT]
    assert req.success is False
    assert req.error == ("Feedback function failed: RuntimeError: cannot show"
                         " 'second'")
    assert "Feedback function failed" in caplog.text
    # Released after Done: nothing reaches the feedback function any more
    transfer.curl.opts[pycurl.WRITEFUNCTION](body)
    assert transfer.received == ["first"]

  def testFeedbackFunctionRaisesBeforeInvalidFrame(self):
    transfer = _Transfer(raise_on=1)
    req = transfer.Run([b'{"feedback":1}\x03garbage\x03'])
    assert transfer.returns == [client_bodies.WRITE_ABORT]
    assert req.error.startswith("Feedback function failed: RuntimeError")

  @pytest.mark.parametrize("headers", [
    ["HTTP/1.1 200 OK", "Content-Type: application/json"],
    ["HTTP/1.1 200 OK"],
    ["HTTP/1.1 404 Not Found", "Content-Type: text/html"],
    # Only the final response's headers count
    ["HTTP/1.1 100 Continue",
     "Content-Type: %s" % feedback.FEEDBACK_CONTENT_TYPE, "",
     "HTTP/1.1 200 OK", "Content-Type: text/plain"],
    ])
  def testNotAStream(self, headers):
    # An old server, a handler without feedback or an error page
    body = [b'{"feedback":1}\x03', b"[true, \xc3\xa9]"]
    transfer = _Transfer()
    req = transfer.Run(body, headers=headers)
    assert transfer.received == []
    assert (req.success, req.error) == (True, None)
    assert req.resp_body == b"".join(body).decode("utf-8")

  @pytest.mark.parametrize("headers", [
    ["HTTP/1.1 200 OK",
     "content-type: Application/Vnd.Ganeti.Feedback; charset=utf-8"],
    ["HTTP/1.1 100 Continue", "", "HTTP/1.1 200 OK",
     "Content-Type: %s" % feedback.FEEDBACK_CONTENT_TYPE],
    ["HTTP/2 200", "content-type: %s" % feedback.FEEDBACK_CONTENT_TYPE],
    ])
  def testStreamHeaders(self, headers):
    transfer = _Transfer()
    req = transfer.Run([_Stream([1], 2)], headers=headers)
    assert transfer.received == [1]
    assert req.resp_body == "2\n"


class TestStartRequestOptions:
  def testFeedbackAsksForStream(self):
    transfer = _Transfer(headers=["Content-type: application/json"])
    opts = transfer.curl.opts
    assert opts[pycurl.HTTPHEADER] == [
      "Content-type: application/json",
      "Accept: %s" % feedback.FEEDBACK_CONTENT_TYPE]
    assert callable(opts[pycurl.HEADERFUNCTION])
    assert transfer.req.headers == ["Content-type: application/json"]

  def testAcceptMerged(self):
    transfer = _Transfer(headers={"Accept": "application/json", "X": "y"})
    assert transfer.curl.opts[pycurl.HTTPHEADER] == [
      "X: y", "Accept: %s, application/json" % feedback.FEEDBACK_CONTENT_TYPE]

  def testPlainRequestUnchanged(self):
    curl = _FakeCurl()
    req = client.HttpClientRequest("192.0.2.1", 1811, "GET", "/x",
                                   headers=["Accept: text/plain"])
    client._StartRequest(curl, req)
    assert curl.opts[pycurl.HTTPHEADER] == ["Accept: text/plain"]
    for option in [pycurl.HEADERFUNCTION, pycurl.READFUNCTION, pycurl.POST,
                   pycurl.POSTFIELDSIZE_LARGE]:
      assert option not in curl.opts

  @pytest.mark.parametrize("kwargs", [
    {"feedback_fn": 1}, {"feedback_fn": "fn"},
    {"response_file": object()}, {"response_file": b""},
    {"feedback_fn": len, "response_file": io.BytesIO()},
    ])
  def testAssertions(self, kwargs):
    with pytest.raises(AssertionError):
      client.HttpClientRequest("localhost", 1811, "GET", "/", **kwargs)

  def testUnseekableBody(self):
    (read_fd, write_fd) = os.pipe()
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
      with pytest.raises(AssertionError):
        client.HttpClientRequest("localhost", 1811, "POST", "/",
                                 post_data=pipe)


class _FailingFile(io.BytesIO):
  def read(self, size=-1):
    raise OSError("disk gone")

  def write(self, data):
    raise OSError("disk full")


class TestUploadAndResponseFile:
  def testUploadRewinds(self):
    """curl may rewind a body (to send it again on a new connection)."""
    body = io.BytesIO(b"skip|0123456789")
    body.seek(5)
    curl = _FakeCurl()
    client._StartRequest(curl, client.HttpClientRequest(
      "192.0.2.1", 1811, "PUT", "/x", post_data=body))
    (read, seek) = (curl.opts[pycurl.READFUNCTION],
                    curl.opts[pycurl.SEEKFUNCTION])
    assert read(4) == b"0123"
    assert seek(0, os.SEEK_SET) == pycurl.SEEKFUNC_OK
    assert read(100) == b"0123456789"
    assert seek(11, os.SEEK_SET) == pycurl.SEEKFUNC_CANTSEEK
    assert seek(0, os.SEEK_END) == pycurl.SEEKFUNC_CANTSEEK

  def testUploadOptions(self):
    body = io.BytesIO(b"skipped|sent in pieces")
    body.seek(len(b"skipped|"))
    curl = _FakeCurl()
    req = client.HttpClientRequest("192.0.2.1", 1811, "PUT", "/x",
                                   post_data=body)
    pending = client._StartRequest(curl, req)
    assert curl.opts[pycurl.CUSTOMREQUEST] == "PUT"
    assert curl.opts[pycurl.POST] is True
    assert curl.opts[pycurl.POSTFIELDSIZE_LARGE] == len(b"sent in pieces")
    assert pycurl.POSTFIELDS not in curl.opts
    read = curl.opts[pycurl.READFUNCTION]
    assert [read(5), read(5), read(5), read(5)] == \
      [b"sent ", b"in pi", b"eces", b""]
    pending.Done(None)
    assert req.success is True
    # The handle lets go of the file
    assert curl.opts[pycurl.READFUNCTION](5) == b""

  def testUploadReadError(self):
    curl = _FakeCurl()
    req = client.HttpClientRequest("192.0.2.1", 1811, "POST", "/x",
                                   post_data=_FailingFile(b"data"))
    pending = client._StartRequest(curl, req)
    assert curl.opts[pycurl.READFUNCTION](4) == pycurl.READFUNC_ABORT
    pending.Done("Error 42: Operation was aborted by an application callback")
    assert req.success is False
    assert req.error == "Reading the request body failed: disk gone"

  def testResponseFile(self):
    target = io.BytesIO()
    curl = _FakeCurl(status=404)
    req = client.HttpClientRequest("192.0.2.1", 1811, "GET", "/x",
                                   response_file=target)
    pending = client._StartRequest(curl, req)
    for chunk in [b"not ", b"\xff", b"found"]:
      assert curl.opts[pycurl.WRITEFUNCTION](chunk) is None
    pending.Done(None)
    assert target.getvalue() == b"not \xfffound"
    assert (req.success, req.resp_status_code, req.resp_body) == \
      (True, 404, None)

  def testResponseFileWriteError(self):
    curl = _FakeCurl()
    req = client.HttpClientRequest("192.0.2.1", 1811, "GET", "/x",
                                   response_file=_FailingFile())
    pending = client._StartRequest(curl, req)
    assert curl.opts[pycurl.WRITEFUNCTION](b"data") == client_bodies.WRITE_ABORT
    pending.Done(_CURL_WRITE_ERROR)
    assert (req.success, req.resp_body) == (False, None)
    assert req.error == "Writing the response body failed: disk full"


# Real transfers over TLS


class _Method(object):
  """Streaming RPC methods (generators) for the test handler."""

  def __init__(self):
    self.acks = {}
    self.logs = {}
    self.active = 0
    self.peak_active = 0
    self._lock = threading.Lock()

  def Count(self, n):
    """Yield C{n} progress messages, a little apart."""
    for i in range(n):
      time.sleep(0.01)
      yield {"step": i, "of": n}
    return [True, "counted %d" % n]

  def Lockstep(self, token, n):
    """Yield C{n} messages, each only once the client has the one before.

    The client's feedback function acknowledges each message; a message
    delivered late (or never) ends the stream with an error.
    """
    (acks, log) = (self.acks[token], self.logs[token])
    with self._lock:
      self.active += 1
      self.peak_active = max(self.peak_active, self.active)
    try:
      for i in range(n):
        log.append(("produced", i))
        yield i
        if not acks[i].wait(10):
          raise RuntimeError("Message %d not received within 10 seconds" % i)
        time.sleep(0.01)
    finally:
      with self._lock:
        self.active -= 1
    return {"token": token, "messages": n}

  @staticmethod
  def Fail(n):
    """Yield C{n} messages, then fail."""
    for i in range(n):
      yield i
    raise RuntimeError("disk on fire")

  def Register(self, token, n):
    """Prepare a lockstep stream; return its feedback function."""
    acks = self.acks[token] = [threading.Event() for _ in range(n)]
    log = self.logs[token] = []

    def _Received(message):
      log.append(("received", message))
      acks[message].set()
    return _Received


def _WantsFeedback(req):
  accept = req.request_headers.get("Accept") or ""
  return feedback.FEEDBACK_CONTENT_TYPE in [value.split(";")[0].strip()
                                            for value in accept.split(",")]


def _RunToEnd(generator):
  """A method's result as an old server answers: JSON, no feedback."""
  while True:
    try:
      next(generator)
    except StopIteration as stop:
      return json.dumps(stop.value) + "\n"


class _FeedbackHandler(http_server.HttpServerHandler):
  """Runs streaming methods; streams feedback to clients that ask for it.

  Paths: C{/count/<n>}, C{/lockstep/<token>/<n>}, C{/fail/<n>} (methods of
  L{_Method}), C{/cut/<n>} (a stream the server cuts off after C{n}
  messages), C{/plain} (no feedback support).
  """

  def __init__(self, methods):
    http_server.HttpServerHandler.__init__(self)
    self.methods = methods

  def HandleRequest(self, req):
    parts = req.request_path.split("/")[1:]
    if parts == ["plain"]:
      return "plain \x03 body"
    if parts[0] == "count":
      generator = self.methods.Count(int(parts[1]))
    elif parts[0] == "lockstep":
      generator = self.methods.Lockstep(parts[1], int(parts[2]))
    elif parts[0] == "fail":
      generator = self.methods.Fail(int(parts[1]))
    elif parts[0] == "cut":
      req.resp_headers[http.HTTP_CONTENT_TYPE] = \
        feedback.FEEDBACK_CONTENT_TYPE
      return self._Cut(int(parts[1]))
    else:
      raise http.HttpNotFound()
    if not _WantsFeedback(req):
      return _RunToEnd(generator)
    req.resp_headers[http.HTTP_CONTENT_TYPE] = feedback.FEEDBACK_CONTENT_TYPE
    return feedback.FeedbackStream(generator)

  @staticmethod
  def _Cut(n):
    for i in range(n):
      yield feedback.EncodeFeedback(i)
    time.sleep(0.2)  # so the client has read the frames before the reset
    raise RuntimeError("server crashed mid-stream")


@pytest.fixture
def pki_server(serve, pki):
  """Start a node-daemon-like TLS server for a handler; return its port."""
  def _Start(handler):
    accepted = {pki.node.digest}
    server = serve(handler, ssl_params=http.HttpSslParams(pki.cluster.path,
                                                          pki.cluster.path),
                   ssl_verify_peer=True,
                   ssl_verify_callback=accepted.__contains__, max_clients=64)
    return server.port
  return _Start


@pytest.fixture
def methods():
  """The streaming methods a test's L{_FeedbackHandler} runs."""
  return _Method()


@pytest.fixture
def feedback_request(pki_server, pki, methods):
  """Build requests to a L{_FeedbackHandler} server."""
  port = pki_server(_FeedbackHandler(methods))

  def _Build(path, **kwargs):
    return client.HttpClientRequest(
      "127.0.0.1", port, "POST", path, post_data="{}", read_timeout=60,
      curl_config_fn=_CurlConfig(pki.cluster, pki.node), **kwargs)
  return _Build


class TestRealFeedback:
  def testLockstep(self, feedback_request, methods):
    feedback_fn = methods.Register("one", 4)
    req = feedback_request("/lockstep/one/4", feedback_fn=feedback_fn)
    client.ProcessRequests([req])
    assert (req.success, req.error, req.resp_status_code) == (True, None, 200)
    assert json.loads(req.resp_body) == {"token": "one", "messages": 4}
    # Each message reached feedback_fn before the next was produced
    assert methods.logs["one"] == [(event, i) for i in range(4)
                                   for event in ["produced", "received"]]

  def testManyInParallel(self, feedback_request, methods):
    streams = [feedback_request("/lockstep/s%d/3" % i,
                                feedback_fn=methods.Register("s%d" % i, 3))
               for i in range(64)]
    old_clients = [feedback_request("/count/3") for _ in range(4)]
    with_feedback = []
    counters = [feedback_request("/count/3", feedback_fn=with_feedback.append)]
    client.ProcessRequests(streams + old_clients + counters)

    for (i, req) in enumerate(streams):
      assert (req.success, req.error) == (True, None), req.error
      assert json.loads(req.resp_body) == {"token": "s%d" % i, "messages": 3}
      assert methods.logs["s%d" % i] == [(event, j) for j in range(3)
                                         for event in ["produced", "received"]]
    assert methods.peak_active > 1
    # A caller ignoring feedback sees the body an old server sends
    for req in old_clients + counters:
      assert (req.success, req.resp_body) == (True, '[true, "counted 3"]\n')
    assert with_feedback == [{"step": i, "of": 3} for i in range(3)]

  def testMethodFails(self, feedback_request):
    received = []
    req = feedback_request("/fail/2", feedback_fn=received.append)
    client.ProcessRequests([req])
    assert received == [0, 1]
    assert (req.success, req.resp_status_code) == (False, 200)
    assert req.error == "Remote method failed: disk on fire"

  def testServerCutsStream(self, feedback_request):
    received = []
    req = feedback_request("/cut/1", feedback_fn=received.append)
    client.ProcessRequests([req])
    assert received == [0]
    assert req.success is False and req.error
    assert req.resp_body == ""

  def testFeedbackFunctionRaises(self, feedback_request):
    def _Fail(message):
      raise ValueError("bad message %r" % (message, ))
    failing = feedback_request("/count/5", feedback_fn=_Fail)
    others = [feedback_request("/count/3", feedback_fn=lambda _: None)
              for _ in range(3)]
    client.ProcessRequests([failing] + others)
    assert failing.success is False
    assert failing.error == ("Feedback function failed: ValueError: bad"
                             " message {'step': 0, 'of': 5}")
    assert [req.resp_body for req in others] == ['[true, "counted 3"]\n'] * 3

  def testNoStreamFromHandler(self, feedback_request):
    received = []
    plain = feedback_request("/plain", feedback_fn=received.append)
    missing = feedback_request("/missing", feedback_fn=received.append)
    client.ProcessRequests([plain, missing])
    assert received == []
    assert (plain.success, plain.resp_status_code, plain.resp_body) == \
      (True, 200, "plain \x03 body")
    assert (missing.success, missing.resp_status_code) == (True, 404)
    assert "Error 404" in missing.resp_body


_MIB = 1024 * 1024
_TRANSFER_SIZE = 64 * _MIB


def _RandomChunks(seed, size, chunk_size=_MIB):
  """The same pseudo-random bytes for the same seed, C{chunk_size} apart."""
  rnd = random.Random(seed)
  for offset in range(0, size, chunk_size):
    yield rnd.randbytes(min(chunk_size, size - offset))


class _TransferHandler(http_server.HttpServerHandler):
  """C{/upload}: a digest of the body; C{/download/<seed>/<size>}: bytes."""

  STREAM_REQUEST_BODY = True
  REQUEST_BODY_LIMIT = 2 * _TRANSFER_SIZE

  def HandleRequest(self, req):
    parts = req.request_path.split("/")[1:]
    if parts == ["upload"]:
      return self._Digest(req)
    if parts[0] == "download":
      return _RandomChunks(int(parts[1]), int(parts[2]))
    raise http.HttpNotFound()

  @staticmethod
  def _Digest(req):
    digest = hashlib.sha256()
    size = 0
    for data in iter(lambda: req.request_body_stream.read(_MIB), b""):
      digest.update(data)
      size += len(data)
    return json.dumps({
      "method": req.request_method,
      "size": size,
      "sha256": digest.hexdigest(),
      "content_length": req.request_headers.get(http.HTTP_CONTENT_LENGTH),
      })


class _RecordingFile(io.FileIO):
  """A file recording the sizes of its reads and writes."""

  def __init__(self, *args):
    io.FileIO.__init__(self, *args)
    self.sizes = []

  def read(self, size=-1):
    self.sizes.append(size)
    return io.FileIO.read(self, size)

  def write(self, data):
    self.sizes.append(len(data))
    return io.FileIO.write(self, data)


@pytest.fixture
def transfer_request(pki_server, pki):
  """Build requests to a L{_TransferHandler} server."""
  port = pki_server(_TransferHandler())

  def _Build(method, path, **kwargs):
    return client.HttpClientRequest(
      "127.0.0.1", port, method, path, read_timeout=120,
      curl_config_fn=_CurlConfig(pki.cluster, pki.node), **kwargs)
  return _Build


class TestRealLargeBodies:
  @pytest.mark.parametrize("method", ["POST", "PUT"])
  def testUploadFile(self, transfer_request, tmp_path, method):
    path = tmp_path / "upload"
    digest = hashlib.sha256()
    with open(path, "wb") as out:
      for data in _RandomChunks(1, _TRANSFER_SIZE):
        digest.update(data)
        out.write(data)

    with _RecordingFile(str(path), "rb") as body:
      req = transfer_request(method, "/upload", post_data=body)
      client.ProcessRequests([req])
    assert (req.success, req.error, req.resp_status_code) == (True, None, 200)
    assert json.loads(req.resp_body) == {
      "method": method, "size": _TRANSFER_SIZE,
      "sha256": digest.hexdigest(), "content_length": str(_TRANSFER_SIZE),
      }
    # Read in pieces as the upload went, never as a whole
    assert 0 < max(body.sizes) <= _MIB

  def testOneFileForSeveralRequests(self, transfer_request, tmp_path):
    """As Ganeti sends one body to many nodes: each request reads the file
    at its own offset, from where the file stood when it was made."""
    path = tmp_path / "shared"
    data = b"head" + b"".join(_RandomChunks(3, 3 * _MIB))
    path.write_bytes(data)
    with open(path, "rb") as body:
      body.seek(4)  # the body starts after a header of the file
      requests = [transfer_request("PUT", "/upload", post_data=body)
                  for _ in range(3)]
      client.ProcessRequests(requests)
      # ... and the same for requests made later, from the same position.
      body.seek(4)
      later = transfer_request("PUT", "/upload", post_data=body)
      client.ProcessRequests([later])
    expected = {"method": "PUT", "size": len(data) - 4,
                "sha256": hashlib.sha256(data[4:]).hexdigest(),
                "content_length": str(len(data) - 4)}
    for req in requests + [later]:
      assert (req.success, req.error, req.resp_status_code) == (True, None,
                                                                200)
      assert json.loads(req.resp_body) == expected

  def testDownloadToFile(self, transfer_request, tmp_path):
    expected = hashlib.sha256()
    for data in _RandomChunks(2, _TRANSFER_SIZE):
      expected.update(data)

    path = tmp_path / "download"
    with _RecordingFile(str(path), "wb") as target:
      req = transfer_request("GET", "/download/2/%d" % _TRANSFER_SIZE,
                             response_file=target)
      client.ProcessRequests([req])
    assert (req.success, req.error, req.resp_status_code) == (True, None, 200)
    assert req.resp_body is None
    assert 0 < max(target.sizes) <= _MIB
    digest = hashlib.sha256()
    with open(path, "rb") as received:
      for data in iter(lambda: received.read(_MIB), b""):
        digest.update(data)
    assert os.path.getsize(path) == _TRANSFER_SIZE
    assert digest.hexdigest() == expected.hexdigest()
