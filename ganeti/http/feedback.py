"""The RPC feedback protocol: progress messages streamed before a result.

A streaming RPC method is a generator: it yields feedback messages while it
works and returns the method's result.  On the wire the response body is a
sequence of frames, each a compact JSON object followed by the separator
byte ETX (C{0x03}), as in Ganeti's LUXI protocol:

  - C{{"feedback": <message>}} for every message the method yields;
  - then exactly one final frame, C{{"result": <value>}} when the method
    returned, or C{{"error": "<text>"}} when it raised.

A stream without a final frame was cut short.  See C{docs/feedback.md}.

This module has no sockets, like h11: the server side (L{FeedbackStream})
turns a generator into the bytes to send, the client side
(L{FeedbackDecoder}) turns the bytes received, however they were split,
into L{Frame} objects.  The HTTP client and server wire these up.
"""

import json
import logging

#: Content type of a feedback stream.  Not C{+json}: the body is a sequence
#: of JSON texts, not one, so generic JSON parsers must not be handed it.
FEEDBACK_CONTENT_TYPE = "application/vnd.ganeti.feedback"

#: The byte that ends every frame (ETX, as in LUXI).
SEPARATOR = b"\x03"

#: Largest frame L{FeedbackDecoder} accepts by default, in bytes (but for
#: the result frame: see L{FeedbackDecoder}).
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024

#: Key of a progress message frame.
FRAME_FEEDBACK = "feedback"

#: Key of the final frame of a method that returned.
FRAME_RESULT = "result"

#: Key of the final frame of a method that raised an exception.
FRAME_ERROR = "error"

#: The frame keys, in the order error messages list them.
FRAME_KINDS = (FRAME_FEEDBACK, FRAME_RESULT, FRAME_ERROR)

#: The frame keys that end a stream.
FINAL_KINDS = frozenset([FRAME_RESULT, FRAME_ERROR])

# How many bytes of a bad frame an error message quotes.
_QUOTE_LENGTH = 40

# How every result frame begins (L{EncodeMessage}'s compact JSON).
_RESULT_START = b'{"%s":' % FRAME_RESULT.encode("ascii")


class FeedbackProtocolError(ValueError):
  """The bytes received are not a valid feedback stream.

  @ivar events: the frames decoded by the same L{FeedbackDecoder.feed} call
      before the error was found, in order (deliver them before failing)
  """

  def __init__(self, message, events=None):
    ValueError.__init__(self, message)
    self.events = list(events or [])


class FeedbackTruncatedError(FeedbackProtocolError):
  """The stream ended before its final frame was complete."""


class FeedbackRemoteError(Exception):
  """The method failed on the server: the stream ended with an error frame.

  @ivar message: the error text the server sent
  """

  def __init__(self, message):
    Exception.__init__(self, message)
    self.message = message


class Frame(tuple):
  """One decoded frame: its kind (a C{FRAME_*} key) and its value.

  For a feedback frame the value is the message, for a result frame the
  method's result, for an error frame the error text.  Compares and
  unpacks like the tuple C{(kind, value)}.
  """

  __slots__ = ()

  def __new__(cls, kind, value):
    if kind not in FRAME_KINDS:
      raise ValueError("Unknown frame kind %r, expected one of %s" %
                       (kind, ", ".join(FRAME_KINDS)))
    return tuple.__new__(cls, (kind, value))

  @property
  def kind(self):
    """The frame's kind: L{FRAME_FEEDBACK}, L{FRAME_RESULT}, L{FRAME_ERROR}."""
    return self[0]

  @property
  def value(self):
    """The message, the result or the error text."""
    return self[1]

  @property
  def is_final(self):
    """Whether this frame ends the stream (a result or an error)."""
    return self[0] in FINAL_KINDS

  def __repr__(self):
    return "Frame(%r, %r)" % (self[0], self[1])


def EncodeMessage(obj, default=None):
  """Return C{obj} as compact JSON followed by the separator, as bytes.

  The JSON is always ASCII (C{ensure_ascii=True}) and can never contain the
  separator: JSON allows no raw control character, not in a string (there
  C{json.dumps} writes U+0003 as C{\\u0003}) and not between tokens (the
  compact form has no whitespace at all).  The result is checked anyway,
  since a separator inside a frame would split it in two.

  @param obj: a JSON-serializable value
  @param default: as for C{json.dumps}: turns other objects into
      serializable ones (e.g. Ganeti's
      C{serializer.EncodeWithoutPrivateFields})
  @raise TypeError: C{obj} is not JSON-serializable
  @raise ValueError: C{obj} is circular

  """
  text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"),
                    default=default)
  data = text.encode("ascii")
  if SEPARATOR in data:
    raise ValueError("JSON encoding produced a raw separator byte at offset"
                     " %d; refusing to send a frame that would split" %
                     data.index(SEPARATOR))
  return data + SEPARATOR


def EncodeFeedback(message, default=None):
  """Return the frame of one feedback message, as bytes."""
  return EncodeMessage({FRAME_FEEDBACK: message}, default=default)


def EncodeResult(value, default=None):
  """Return the final frame of a method that returned C{value}, as bytes."""
  return EncodeMessage({FRAME_RESULT: value}, default=default)


def EncodeError(text):
  """Return the final frame of a method that failed with C{text}, as bytes.

  @type text: str

  """
  if not isinstance(text, str):
    raise TypeError("An error frame's text must be str, not %s" %
                    type(text).__name__)
  return EncodeMessage({FRAME_ERROR: text})


def ErrorText(err):
  """Return the text an error frame carries for exception C{err}.

  That is the exception's C{message} attribute when it is a non-empty str
  (Ganeti's C{HttpException}, whose C{str()} is empty), else C{str(err)},
  else the exception's class name.  Never a traceback.

  """
  try:
    message = getattr(err, "message", None)
    if isinstance(message, str) and message:
      return message
    text = str(err)
  except Exception:  # pylint: disable=broad-except
    text = None  # an exception that cannot even describe itself
  if isinstance(text, str) and text:
    return text
  return type(err).__name__


def FeedbackStream(generator, default=None):
  """Yield the frames of a streaming method's response, one bytes per frame.

  C{generator} yields feedback messages and returns the method's result
  (C{StopIteration.value}).  Each message becomes a feedback frame as soon
  as it is yielded; the return value becomes the result frame.  An
  exception raised by C{generator}, or a message or result that cannot be
  encoded, is logged with its traceback and becomes an error frame carrying
  only the error's text (L{ErrorText}); the stream ends there.

  C{generator} is always closed when this stream ends, including when the
  consumer stops early and closes this stream (or drops it), so the
  C{finally} blocks of the method run.

  @param generator: a generator (or any iterator) of feedback messages
  @param default: passed to C{json.dumps} for messages and the result
  @return: a generator of bytes, each a complete frame

  """
  index = 0
  try:
    while True:
      try:
        message = next(generator)
      except StopIteration as stop:
        result = stop.value
        break
      except Exception as err:  # pylint: disable=broad-except
        logging.exception("Streaming method failed after %d feedback"
                          " message(s)", index)
        yield EncodeError(ErrorText(err))
        return

      try:
        frame = EncodeFeedback(message, default=default)
      except Exception as err:  # pylint: disable=broad-except
        logging.exception("Feedback message %d cannot be encoded", index)
        yield EncodeError("Feedback message %d cannot be encoded: %s" %
                          (index, ErrorText(err)))
        return
      index += 1
      yield frame

    try:
      frame = EncodeResult(result, default=default)
    except Exception as err:  # pylint: disable=broad-except
      logging.exception("The result of a streaming method cannot be encoded")
      frame = EncodeError("The result cannot be encoded: %s" % ErrorText(err))
    yield frame
  finally:
    close = getattr(generator, "close", None)
    if close is not None:
      close()


def IsFeedbackContentType(value):
  """Return whether a Content-Type header value names a feedback stream.

  Parameters (C{; charset=...}) and case are ignored.

  @type value: str or None

  """
  if not value:
    return False
  media_type = value.split(";", 1)[0].strip().lower()
  return media_type == FEEDBACK_CONTENT_TYPE


class FeedbackDecoder(object):
  """Turns the bytes of a feedback stream into L{Frame} objects.

  Feed it the bytes as they arrive, in pieces of any size; each call returns
  the frames completed by that piece.  At the end of the body call
  L{finish}, which returns the final frame or raises if the stream was
  truncated.  Only new bytes are searched for the separator, and a
  feedback or error frame may not grow beyond C{max_frame_size}, so memory
  stays bounded by the result.  The result frame has no limit, as a
  response body without feedback has none: a method whose result the
  plain path delivers must not fail because the client asked for feedback.

  After an error every further call raises that error again.

  @ivar final: the final frame once decoded, else None
  @ivar frame_count: how many frames have been decoded
  @ivar byte_count: how many bytes have been fed

  """

  def __init__(self, max_frame_size=DEFAULT_MAX_FRAME_SIZE):
    """Create a decoder.

    @param max_frame_size: the largest frame accepted, in bytes, not
        counting its separator

    """
    if max_frame_size < 1:
      raise ValueError("max_frame_size must be at least 1, not %r" %
                       (max_frame_size, ))
    self.max_frame_size = max_frame_size
    self.final = None
    self.frame_count = 0
    self.byte_count = 0
    self._pending = bytearray()
    self._frame_start = 0
    self._error = None
    self._finished = False

  def feed(self, data):
    """Decode the next bytes of the stream.

    @type data: bytes-like
    @return: the frames completed by C{data}, in order (a list of L{Frame})
    @raise FeedbackProtocolError: the stream is invalid; the exception's
        C{events} holds the frames decoded by this call before the error

    """
    self._CheckUsable()
    if not isinstance(data, bytes):
      data = bytes(data)
    events = []
    try:
      self._Feed(data, events)
    except FeedbackProtocolError as err:
      err.events = events
      self._error = err
      raise
    return events

  def finish(self):
    """Declare the end of the stream; return its final frame.

    @rtype: L{Frame}
    @raise FeedbackTruncatedError: bytes after the last separator (an
        incomplete frame), or no final frame at all
    @raise FeedbackProtocolError: an error found earlier, again

    """
    self._CheckUsable(finishing=True)
    if self._finished:
      return self.final
    if self._pending:
      err = FeedbackTruncatedError(
        "Feedback stream truncated: frame %d (at byte %d) has %d byte(s) but"
        " no separator" % (self.frame_count + 1, self._frame_start,
                           len(self._pending)))
    elif self.final is None:
      err = FeedbackTruncatedError(
        "Feedback stream truncated: it ended after %d frame(s) and %d byte(s)"
        " without a final result or error frame" %
        (self.frame_count, self.byte_count))
    else:
      self._finished = True
      return self.final
    self._error = err
    raise err

  def _CheckUsable(self, finishing=False):
    if self._error is not None:
      raise FeedbackProtocolError(
        "Feedback decoder already failed: %s" % self._error)
    if self._finished and not finishing:
      raise FeedbackProtocolError("Feedback decoder already finished")

  def _Feed(self, data, events):
    start = 0
    while True:
      end = data.find(SEPARATOR, start)
      if end < 0:
        break
      if self.final is not None:
        self._AfterFinal()
      if self._pending:
        self._pending += data[start:end]
        frame = bytes(self._pending)
        self._pending = bytearray()
      else:
        frame = data[start:end]
      self._CheckSize(len(frame), frame)
      self.byte_count += end + 1 - start
      events.append(self._Decode(frame))
      self._frame_start = self.byte_count
      start = end + 1

    rest = len(data) - start
    if rest:
      if self.final is not None:
        self._AfterFinal()
      self._CheckSize(len(self._pending) + rest,
                      bytes(self._pending[:len(_RESULT_START)]) +
                      data[start:start + len(_RESULT_START)])
      self._pending += data[start:]
      self.byte_count += rest

  def _CheckSize(self, size, start):
    """Refuse a frame of C{size} bytes beginning with C{start}, unless it is
    small enough or the result frame."""
    if size > self.max_frame_size and not start.startswith(_RESULT_START):
      raise FeedbackProtocolError(
        "Feedback frame %d (at byte %d) exceeds the maximum frame size of %d"
        " bytes" % (self.frame_count + 1, self._frame_start,
                    self.max_frame_size))

  def _AfterFinal(self):
    raise FeedbackProtocolError(
      "Data after the final frame (frame %d, %s) at byte %d of the feedback"
      " stream" % (self.frame_count, self.final.kind, self._frame_start))

  def _Bad(self, frame, why):
    quoted = frame[:_QUOTE_LENGTH]
    return FeedbackProtocolError(
      "Feedback frame %d (at byte %d, %d bytes, starting %r) %s" %
      (self.frame_count + 1, self._frame_start, len(frame), quoted, why))

  def _Decode(self, frame):
    if not frame:
      raise self._Bad(frame, "is empty")
    try:
      text = frame.decode("utf-8")
    except UnicodeDecodeError as err:
      raise self._Bad(frame, "is not valid UTF-8: %s" % err)
    try:
      obj = json.loads(text)
    except ValueError as err:
      raise self._Bad(frame, "is not JSON: %s" % err)
    except RecursionError:
      raise self._Bad(frame, "is nested too deeply to decode")
    if not isinstance(obj, dict):
      raise self._Bad(frame, "is a JSON %s, expected an object with one of"
                      " the keys %s" % (_JsonTypeName(obj),
                                        ", ".join(FRAME_KINDS)))
    if len(obj) != 1 or next(iter(obj)) not in FRAME_KINDS:
      raise self._Bad(frame, "has the keys %s, expected exactly one of %s" %
                      (sorted(obj), ", ".join(FRAME_KINDS)))
    ((kind, value), ) = obj.items()
    if kind == FRAME_ERROR and not isinstance(value, str):
      raise self._Bad(frame, "is an error frame whose text is a JSON %s,"
                      " expected a string" % _JsonTypeName(value))
    self.frame_count += 1
    event = Frame(kind, value)
    if event.is_final:
      self.final = event
    return event


def _JsonTypeName(obj):
  """Return the JSON name of the type of decoded value C{obj}."""
  if obj is None:
    return "null"
  if isinstance(obj, bool):
    return "boolean"
  if isinstance(obj, (int, float)):
    return "number"
  if isinstance(obj, str):
    return "string"
  if isinstance(obj, list):
    return "array"
  return "object"


def ResultBody(frame):
  """Return what C{resp_body} holds for a stream that ended with C{frame}.

  For a result frame that is the JSON text of the result followed by a
  newline, which is what Ganeti's C{serializer.DumpJson} (and so a
  non-streaming noded handler) produces for the same value: a caller that
  ignores feedback sees the body it saw before, e.g. C{'[true, "done"]\\n'}.

  @type frame: L{Frame}
  @rtype: str
  @raise FeedbackRemoteError: C{frame} is an error frame
  @raise ValueError: C{frame} is not a final frame

  """
  if frame.kind == FRAME_RESULT:
    return json.dumps(frame.value) + "\n"
  if frame.kind == FRAME_ERROR:
    raise FeedbackRemoteError(frame.value)
  raise ValueError("A %s frame is not a final frame; it has no result body" %
                   frame.kind)


def ClientAcceptsFeedback(req):
  """Whether the request's C{Accept} header asks for a feedback stream.

  Every C{Accept} line counts (lighttpd joins them into one before the
  fastcgi backend sees them), and a media range with C{q=0} means "not
  acceptable".

  @param req: the server's request object (C{_HttpServerRequest})
  """
  headers = req.request_headers
  if not headers:
    return False
  if hasattr(headers, "get_all"):
    lines = headers.get_all("Accept") or []
  else:
    lines = [headers.get("Accept") or ""]
  return any(IsFeedbackContentType(item) and not _HasQualityZero(item)
             for line in lines for item in line.split(","))


def _HasQualityZero(media_range):
  """Whether an C{Accept} item such as C{"a/b;q=0.0"} has quality 0."""
  for parameter in media_range.split(";")[1:]:
    (name, _, value) = parameter.partition("=")
    if name.strip().lower() == "q":
      try:
        return float(value.strip()) == 0
      except ValueError:
        return False
  return False


def RespondWithFeedback(req, generator, default=None):
  """What C{HandleRequest} returns for a method that reports progress.

  A client that asked for feedback (see L{ClientAcceptsFeedback}) gets the
  feedback stream, marked with L{FEEDBACK_CONTENT_TYPE}.  Any other client
  (an older master, the Haskell daemons) gets what a non-streaming handler
  would have returned: the method runs to its end, its feedback is dropped
  and the body is the result's JSON (the same text as L{ResultBody}).

  @param req: the server's request object
  @param generator: yields feedback messages, returns the result
  @param default: passed to C{json.dumps}
  """
  if ClientAcceptsFeedback(req):
    req.resp_headers["Content-Type"] = FEEDBACK_CONTENT_TYPE
    return FeedbackStream(generator, default=default)
  while True:
    try:
      next(generator)
    except StopIteration as stop:
      return json.dumps(stop.value, default=default) + "\n"
