"""The feedback codec: frames, the server's stream and the client's decoder."""

import gc
import json
import logging
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ganeti.http import feedback
from ganeti.http.feedback import (
  DEFAULT_MAX_FRAME_SIZE, FEEDBACK_CONTENT_TYPE, SEPARATOR,
  EncodeError, EncodeFeedback, EncodeMessage, EncodeResult, ErrorText,
  FeedbackDecoder, FeedbackProtocolError, FeedbackRemoteError,
  FeedbackStream, FeedbackTruncatedError, Frame, IsFeedbackContentType,
  ResultBody)


# Strings that stress the framing: the separator itself, other control
# characters, quotes, backslashes and non-ASCII text of every width.
_TRICKY_CHARS = "\x03\x00\x1f\n\"\\/\x7f\u00e9\u20ac\u2603\U0001d11e"
_TEXT = st.text(alphabet=st.one_of(st.sampled_from(_TRICKY_CHARS),
                                   st.characters()))
_JSON = st.recursive(
  st.none() | st.booleans() | st.integers() |
  st.floats(allow_nan=False, allow_infinity=False) | _TEXT,
  lambda children: (st.lists(children, max_size=4) |
                    st.dictionaries(_TEXT, children, max_size=4)),
  max_leaves=20)


def _Generator(messages, result=None, exc=None):
  """A streaming method yielding C{messages}, then returning or raising."""
  for message in messages:
    yield message
  if exc is not None:
    raise exc
  return result


def _Stream(messages, result=None):
  """The bytes a server sends for C{messages} and C{result}."""
  return b"".join(FeedbackStream(_Generator(messages, result)))


def _Expected(messages, result):
  return ([Frame("feedback", m) for m in messages] +
          [Frame("result", result)])


def _Split(data, cuts):
  """Split C{data} at the offsets in C{cuts}."""
  bounds = [0] + sorted(set(cuts)) + [len(data)]
  return [data[a:b] for (a, b) in zip(bounds, bounds[1:])]


def _FeedAll(decoder, chunks):
  events = []
  for chunk in chunks:
    events.extend(decoder.Feed(chunk))
  return events


def _Decode(data, **kwargs):
  decoder = FeedbackDecoder(**kwargs)
  events = decoder.Feed(data)
  return (events, decoder.Finish())


# Content type


def test_content_type_is_a_vendor_type_without_json_suffix():
  assert FEEDBACK_CONTENT_TYPE == "application/vnd.ganeti.feedback"
  assert not FEEDBACK_CONTENT_TYPE.endswith("+json")


@pytest.mark.parametrize("value, expected", [
  ("application/vnd.ganeti.feedback", True),
  ("Application/VND.Ganeti.Feedback; charset=ascii", True),
  ("  application/vnd.ganeti.feedback  ", True),
  ("application/json", False),
  ("application/vnd.ganeti.feedback+json", False),
  ("", False),
  (None, False),
  ])
def test_is_feedback_content_type(value, expected):
  assert IsFeedbackContentType(value) is expected


# Encoding


def test_encode_message_is_compact_json_and_separator():
  assert EncodeMessage({"a": [1, 2], "b": None}) == b'{"a":[1,2],"b":null}\x03'
  assert SEPARATOR == b"\x03"


def test_encode_message_escapes_separator_and_non_ascii():
  data = EncodeMessage("x\x03y\u00e9\U0001d11e")
  assert data == b'"x\\u0003y\\u00e9\\ud834\\udd1e"\x03'
  assert data.count(SEPARATOR) == 1
  data.decode("ascii")


def test_encode_message_refuses_what_json_refuses():
  with pytest.raises(TypeError):
    EncodeMessage({1, 2})
  circular = []
  circular.append(circular)
  with pytest.raises(ValueError):
    EncodeMessage(circular)


def test_encode_message_default_hook():
  class Private(object):
    pass
  assert EncodeMessage([Private()], default=lambda _: None) == b"[null]\x03"


def test_encode_message_checks_the_guarantee(monkeypatch):
  # Should json ever emit a raw separator, the frame is refused, not sent.
  monkeypatch.setattr(feedback.json, "dumps", lambda *_, **__: '"a\x03"')
  with pytest.raises(ValueError, match="raw separator byte at offset 2"):
    EncodeMessage("a")


@given(_JSON)
def test_encoded_frame_has_exactly_one_separator_at_its_end(value):
  data = EncodeMessage(value)
  assert data.index(SEPARATOR) == len(data) - 1
  assert max(data) < 0x80
  assert json.loads(data[:-1]) == value


def test_frame_encoders():
  assert EncodeFeedback("copying") == b'{"feedback":"copying"}\x03'
  assert EncodeResult([True, None]) == b'{"result":[true,null]}\x03'
  assert EncodeError("disk full") == b'{"error":"disk full"}\x03'
  with pytest.raises(TypeError, match="must be str, not int"):
    EncodeError(5)


# Frames


def test_frame_is_a_kind_value_pair():
  frame = Frame("result", [1])
  assert frame == ("result", [1])
  (kind, value) = frame
  assert (kind, value) == (frame.kind, frame.value) == ("result", [1])
  assert frame.is_final and Frame("error", "x").is_final
  assert not Frame("feedback", 1).is_final
  assert repr(frame) == "Frame('result', [1])"
  with pytest.raises(ValueError, match="Unknown frame kind 'done'"):
    Frame("done", 1)


# Server side: FeedbackStream


def test_stream_yields_one_frame_per_message_then_the_result():
  frames = list(FeedbackStream(_Generator(["a", {"step": 2}], [True, "ok"])))
  assert frames == [b'{"feedback":"a"}\x03', b'{"feedback":{"step":2}}\x03',
                    b'{"result":[true,"ok"]}\x03']


def test_stream_without_feedback_is_just_the_result():
  assert list(FeedbackStream(_Generator([]))) == [b'{"result":null}\x03']


def test_stream_is_lazy():
  pulled = []

  def Method():
    pulled.append(1)
    yield "one"
    pulled.append(2)
    return "done"

  stream = FeedbackStream(Method())
  assert not pulled
  assert next(stream) == b'{"feedback":"one"}\x03'
  assert pulled == [1]


def test_stream_turns_an_exception_into_an_error_frame(caplog):
  caplog.set_level(logging.ERROR)
  frames = list(FeedbackStream(
    _Generator(["a"], exc=RuntimeError("disk sdb failed"))))
  assert frames == [b'{"feedback":"a"}\x03',
                    b'{"error":"disk sdb failed"}\x03']
  assert b"Traceback" not in b"".join(frames)
  assert "Streaming method failed after 1 feedback" in caplog.text
  assert "RuntimeError: disk sdb failed" in caplog.text


def test_error_text():
  class HttpLike(Exception):
    def __init__(self, message=None):
      Exception.__init__(self)
      self.message = message

  assert ErrorText(ValueError("bad size")) == "bad size"
  assert ErrorText(HttpLike("Not found")) == "Not found"
  assert ErrorText(HttpLike()) == "HttpLike"
  assert ErrorText(KeyError()) == "KeyError"

  class Unprintable(Exception):
    def __str__(self):
      raise RuntimeError("cannot describe myself")

  assert ErrorText(Unprintable()) == "Unprintable"
  frames = list(FeedbackStream(_Generator(["working"], exc=Unprintable())))
  assert frames[-1] == EncodeError("Unprintable")


def test_stream_of_ganeti_http_exception_uses_its_message():
  from ganeti import http as ganeti_http
  frames = list(FeedbackStream(
    _Generator([], exc=ganeti_http.HttpNotFound("No such volume"))))
  assert frames == [b'{"error":"No such volume"}\x03']


def test_stream_unencodable_feedback_is_an_error_and_closes(caplog):
  closed = []

  def Method():
    try:
      yield "fine"
      yield {"a set": {1}}
      yield "never sent"
    finally:
      closed.append(True)

  frames = list(FeedbackStream(Method()))
  assert len(frames) == 2
  assert frames[0] == b'{"feedback":"fine"}\x03'
  error = json.loads(frames[1][:-1])["error"]
  assert error.startswith("Feedback message 1 cannot be encoded: ")
  assert "set is not JSON serializable" in error
  assert closed == [True]
  assert "Feedback message 1 cannot be encoded" in caplog.text


def test_stream_unencodable_result_is_an_error():
  frames = list(FeedbackStream(_Generator(["a"], result=object())))
  assert frames[0] == b'{"feedback":"a"}\x03'
  assert json.loads(frames[1][:-1])["error"].startswith(
    "The result cannot be encoded: ")


def test_stream_default_hook_applies_to_messages_and_result():
  stream = FeedbackStream(_Generator([object()], object()),
                          default=lambda _: "<private>")
  assert list(stream) == [b'{"feedback":"<private>"}\x03',
                          b'{"result":"<private>"}\x03']


def test_stream_failing_default_hook_is_an_error_frame():
  """Whatever the encoding raises (here the hook's KeyError) ends the
  stream with an error frame, as for values JSON refuses."""
  def Refuse(value):
    raise KeyError(value)

  message_frames = list(FeedbackStream(_Generator([object()], 1),
                                       default=Refuse))
  assert len(message_frames) == 1
  assert json.loads(message_frames[0][:-1])["error"].startswith(
    "Feedback message 0 cannot be encoded: ")
  result_frames = list(FeedbackStream(_Generator(["a"], object()),
                                      default=Refuse))
  assert json.loads(result_frames[1][:-1])["error"].startswith(
    "The result cannot be encoded: ")


def _Closable(log):
  try:
    yield 1
    yield 2
    yield 3
  finally:
    log.append("finally")


def test_stream_close_runs_the_methods_finally():
  log = []
  stream = FeedbackStream(_Closable(log))
  assert next(stream) == b'{"feedback":1}\x03'
  stream.close()
  assert log == ["finally"]


def test_dropping_the_stream_runs_the_methods_finally():
  log = []
  stream = FeedbackStream(_Closable(log))
  next(stream)
  del stream
  gc.collect()
  assert log == ["finally"]


def test_stream_close_propagates_a_failing_finally():
  def Method():
    try:
      yield 1
    finally:
      raise OSError("cleanup failed")

  stream = FeedbackStream(Method())
  next(stream)
  with pytest.raises(OSError, match="cleanup failed"):
    stream.close()


def test_stream_accepts_a_plain_iterator():
  assert list(FeedbackStream(iter(["a"]))) == [
    b'{"feedback":"a"}\x03', b'{"result":null}\x03']


def test_stream_lets_base_exceptions_through_and_closes():
  log = []

  def Method():
    try:
      yield 1
      raise KeyboardInterrupt()
    finally:
      log.append("finally")

  stream = FeedbackStream(Method())
  next(stream)
  with pytest.raises(KeyboardInterrupt):
    next(stream)
  assert log == ["finally"]


# Client side: FeedbackDecoder


def test_decoder_whole_stream_in_one_feed():
  data = _Stream(["a", "b"], [True, 1])
  (events, final) = _Decode(data)
  assert events == _Expected(["a", "b"], [True, 1])
  assert final == Frame("result", [True, 1])


def test_decoder_byte_by_byte():
  data = _Stream(["copying", {"done": 0.5}], [True, "x"])
  decoder = FeedbackDecoder()
  events = _FeedAll(decoder, [data[i:i + 1] for i in range(len(data))])
  assert events == _Expected(["copying", {"done": 0.5}], [True, "x"])
  assert decoder.Finish() == Frame("result", [True, "x"])
  assert decoder.frame_count == 3
  assert decoder.byte_count == len(data)


def test_decoder_returns_each_frame_as_soon_as_its_separator_arrives():
  decoder = FeedbackDecoder()
  assert decoder.Feed(b'{"feedback":') == []
  assert decoder.Feed(b'"a"}') == []
  assert decoder.Feed(b'\x03{"feedback":"b"}\x03{"res') == [
    Frame("feedback", "a"), Frame("feedback", "b")]
  assert decoder.final is None
  assert decoder.Feed(b'ult":7}\x03') == [Frame("result", 7)]
  assert decoder.final == Frame("result", 7)


def test_decoder_escaped_separator_inside_a_string():
  data = EncodeFeedback("a\x03b") + EncodeResult("\x03")
  assert data.count(SEPARATOR) == 2
  (events, _) = _Decode(data)
  assert events == [Frame("feedback", "a\x03b"), Frame("result", "\x03")]


def test_decoder_accepts_utf8_frames_from_other_senders():
  data = '{"feedback":"\u00e9\u2603"}\x03{"result":1}\x03'.encode("utf-8")
  (events, _) = _Decode(data)
  assert events[0] == Frame("feedback", "\u00e9\u2603")


def test_decoder_accepts_bytes_like_input():
  decoder = FeedbackDecoder()
  assert decoder.Feed(bytearray(b'{"feedback":1}\x03')) == [
    Frame("feedback", 1)]
  assert decoder.Feed(memoryview(b'{"result":2}\x03')) == [Frame("result", 2)]
  assert decoder.Feed(b"") == []


def test_decoder_error_frame_ends_the_stream():
  data = _Stream(["a"])[:-len(EncodeResult(None))] + EncodeError("boom")
  (events, final) = _Decode(data)
  assert events == [Frame("feedback", "a"), Frame("error", "boom")]
  assert final == Frame("error", "boom")


def test_finish_is_idempotent():
  decoder = FeedbackDecoder()
  decoder.Feed(EncodeResult(1))
  assert decoder.Finish() == decoder.Finish() == Frame("result", 1)
  with pytest.raises(FeedbackProtocolError, match="already finished"):
    decoder.Feed(b"")


def test_truncated_inside_a_frame():
  decoder = FeedbackDecoder()
  decoder.Feed(EncodeFeedback("a") + b'{"result":[tr')
  with pytest.raises(FeedbackTruncatedError,
                     match=r"frame 2 \(at byte 17\) has 13 byte\(s\) but no"
                     " separator"):
    decoder.Finish()


def test_truncated_without_a_final_frame():
  decoder = FeedbackDecoder()
  decoder.Feed(EncodeFeedback("a") + EncodeFeedback("b"))
  with pytest.raises(FeedbackTruncatedError,
                     match=r"after 2 frame\(s\) and 34 byte\(s\) without a"
                     " final result or error frame"):
    decoder.Finish()


def test_empty_stream_is_truncated():
  with pytest.raises(FeedbackTruncatedError, match="after 0 frame"):
    FeedbackDecoder().Finish()


def test_truncation_error_is_a_protocol_error_and_a_value_error():
  assert issubclass(FeedbackTruncatedError, FeedbackProtocolError)
  assert issubclass(FeedbackProtocolError, ValueError)


@pytest.mark.parametrize("frame, why", [
  (b"not json", "is not JSON: Expecting value: line 1 column 1"),
  (b'{"feedback":1', "is not JSON: Expecting ',' delimiter"),
  (b"\xff\xfe", "is not valid UTF-8"),
  (b"[1,2]", "is a JSON array, expected an object with one of the keys"
   " feedback, result, error"),
  (b'"result"', "is a JSON string, expected an object"),
  (b"{}", r"has the keys \[\], expected exactly one of feedback, result,"
   " error"),
  (b'{"progress":1}', r"has the keys \['progress'\]"),
  (b'{"result":1,"error":"x"}', r"has the keys \['error', 'result'\]"),
  (b'{"error":42}', "is an error frame whose text is a JSON number,"
   " expected a string"),
  (b'{"error":null}', "is an error frame whose text is a JSON null"),
  (b"", "is empty"),
  (b"[" * 100000, "is nested too deeply"),
  ])
def test_bad_frame_says_which_and_why(frame, why):
  decoder = FeedbackDecoder()
  good = EncodeFeedback("ok")
  with pytest.raises(FeedbackProtocolError,
                     match=r"^Feedback frame 2 \(at byte %d, %d bytes, "
                     "starting .*\\) %s" % (len(good), len(frame), why)) \
      as info:
    decoder.Feed(good + frame + SEPARATOR + EncodeResult(1))
  assert info.value.events == [Frame("feedback", "ok")]


def test_bad_frame_quotes_its_start_only():
  decoder = FeedbackDecoder()
  with pytest.raises(FeedbackProtocolError) as info:
    decoder.Feed(b"x" * 1000 + SEPARATOR)
  assert "starting %r" % (b"x" * 40) in str(info.value)
  assert "x" * 41 not in str(info.value)


def test_errors_are_sticky():
  decoder = FeedbackDecoder()
  with pytest.raises(FeedbackProtocolError):
    decoder.Feed(b"nope\x03")
  for call in (lambda: decoder.Feed(EncodeResult(1)), decoder.Finish):
    with pytest.raises(FeedbackProtocolError,
                       match="already failed: Feedback frame 1"):
      call()


def test_data_after_the_final_frame():
  for tail in (b"x", SEPARATOR, EncodeFeedback("late")):
    decoder = FeedbackDecoder()
    with pytest.raises(FeedbackProtocolError,
                       match=r"Data after the final frame \(frame 2, result\)"
                       " at byte 30") as info:
      decoder.Feed(EncodeFeedback("a") + EncodeResult(1) + tail)
    assert info.value.events == [Frame("feedback", "a"), Frame("result", 1)]


def test_data_after_the_final_frame_in_a_later_feed():
  decoder = FeedbackDecoder()
  decoder.Feed(EncodeError("boom"))
  with pytest.raises(FeedbackProtocolError,
                     match=r"Data after the final frame \(frame 1, error\)"):
    decoder.Feed(b" ")


def test_max_frame_size_without_separator():
  decoder = FeedbackDecoder(max_frame_size=20)
  decoder.Feed(EncodeFeedback("a"))
  decoder.Feed(b"{" + b" " * 18)
  with pytest.raises(FeedbackProtocolError,
                     match=r"Feedback frame 2 \(at byte 17\) exceeds the"
                     " maximum frame size of 20 bytes"):
    decoder.Feed(b"  ")


def test_max_frame_size_of_a_complete_frame():
  decoder = FeedbackDecoder(max_frame_size=20)
  with pytest.raises(FeedbackProtocolError, match="maximum frame size of 20"):
    decoder.Feed(EncodeFeedback("x" * 20))


def test_max_frame_size_is_inclusive_and_excludes_the_separator():
  frame = EncodeFeedback("x" * 8)
  decoder = FeedbackDecoder(max_frame_size=len(frame) - 1)
  assert decoder.Feed(frame) == [Frame("feedback", "x" * 8)]
  with pytest.raises(FeedbackProtocolError, match="maximum frame size"):
    FeedbackDecoder(max_frame_size=len(frame) - 2).Feed(frame)


@pytest.mark.parametrize("pieces", [1, 7, 1000])
def test_the_result_frame_has_no_size_limit(pieces):
  """A result the plain path delivers must not fail because the client
  asked for feedback: only feedback and error frames are limited."""
  data = EncodeFeedback("a") + EncodeResult("x" * 300)
  size = -(-len(data) // pieces)

  def _InPieces(data):
    decoder = FeedbackDecoder(max_frame_size=20)
    for start in range(0, len(data), size):
      decoder.Feed(data[start:start + size])
    return decoder.Finish()

  assert _InPieces(data) == Frame("result", "x" * 300)
  with pytest.raises(FeedbackProtocolError, match="maximum frame size"):
    _InPieces(EncodeError("y" * 300))


def test_max_frame_size_default_and_validation():
  assert DEFAULT_MAX_FRAME_SIZE == 64 * 1024 * 1024
  assert FeedbackDecoder().max_frame_size == DEFAULT_MAX_FRAME_SIZE
  with pytest.raises(ValueError, match="at least 1, not 0"):
    FeedbackDecoder(max_frame_size=0)


def test_large_frame_in_small_feeds_is_linear():
  # Re-scanning the buffer on each feed would take minutes here.
  payload = "x" * (16 * 1024 * 1024)
  data = EncodeFeedback(payload) + EncodeResult(1)
  decoder = FeedbackDecoder()
  started = time.monotonic()
  events = _FeedAll(decoder, [data[i:i + 1024]
                              for i in range(0, len(data), 1024)])
  assert time.monotonic() - started < 20
  assert events == [Frame("feedback", payload), Frame("result", 1)]


# The response body


def test_result_body_is_what_ganeti_serializer_dumps():
  # Ganeti's serializer.DumpJson: default separators, a final newline.
  result = [True, {"vg": {"size": 1024.5, "name": "xenvg\u00e9"}}]
  (_, final) = _Decode(_Stream(["progress"], result))
  assert ResultBody(final) == (
    '[true, {"vg": {"size": 1024.5, "name": "xenvg\\u00e9"}}]\n')
  assert ResultBody(final) == json.dumps(result) + "\n"


def test_result_body_of_an_error_frame_raises():
  with pytest.raises(FeedbackRemoteError, match="disk failed") as info:
    ResultBody(Frame("error", "disk failed"))
  assert info.value.message == "disk failed"


def test_result_body_of_a_feedback_frame_is_an_error():
  with pytest.raises(ValueError, match="feedback frame is not a final frame"):
    ResultBody(Frame("feedback", 1))


# Properties


@settings(max_examples=300)
@given(st.lists(_JSON, max_size=6), _JSON, st.data())
def test_any_split_decodes_to_the_original(messages, result, data):
  stream = _Stream(messages, result)
  cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
  decoder = FeedbackDecoder()
  events = _FeedAll(decoder, _Split(stream, cuts))
  assert events == _Expected(messages, result)
  assert decoder.Finish() == Frame("result", result)
  assert ResultBody(decoder.final) == json.dumps(result) + "\n"


@settings(max_examples=300)
@given(st.lists(_JSON, max_size=6), _JSON, st.data())
def test_any_truncation_is_detected(messages, result, data):
  stream = _Stream(messages, result)
  end = data.draw(st.integers(0, len(stream) - 1))
  cuts = data.draw(st.lists(st.integers(0, end), max_size=6))
  decoder = FeedbackDecoder()
  events = _FeedAll(decoder, _Split(stream[:end], cuts))
  assert events == _Expected(messages, result)[:len(events)]
  assert decoder.final is None
  with pytest.raises(FeedbackTruncatedError):
    decoder.Finish()


@given(st.lists(_JSON, max_size=4), _TEXT, st.data())
def test_error_streams_decode_too(messages, text, data):
  stream = b"".join(FeedbackStream(
    _Generator(messages, exc=RuntimeError(text or "x"))))
  cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8))
  decoder = FeedbackDecoder()
  events = _FeedAll(decoder, _Split(stream, cuts))
  assert events[:-1] == [Frame("feedback", m) for m in messages]
  assert decoder.Finish() == Frame("error", text or "x")
