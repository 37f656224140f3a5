"""The client side of the RPC feedback stream: bytes received to frames.

L{FeedbackDecoder} takes the body of a feedback stream in pieces of any
size, as they arrive, and returns the L{Frame} objects each piece
completes; the errors it raises say which frame is bad and why.  No
sockets.  The public API is L{ganeti.http.feedback}; see
C{docs/feedback.md}.
"""

import json

from ganeti.http.feedback_frames import (
  FRAME_ERROR, FRAME_KINDS, FRAME_RESULT, SEPARATOR, Frame)

#: Largest frame L{FeedbackDecoder} accepts by default, in bytes (but for
#: the result frame: see L{FeedbackDecoder}).
DEFAULT_MAX_FRAME_SIZE = 64 * 1024 * 1024

# How many bytes of a bad frame an error message quotes.
_QUOTE_LENGTH = 40

# How every result frame begins (L{feedback_frames.EncodeMessage}'s
# compact JSON).
_RESULT_START = b'{"%s":' % FRAME_RESULT.encode("ascii")


class FeedbackProtocolError(ValueError):
  """The bytes received are not a valid feedback stream.

  @ivar events: the frames decoded by the same L{FeedbackDecoder.Feed} call
      before the error was found, in order (deliver them before failing)
  """

  def __init__(self, message, events=None):
    ValueError.__init__(self, message)
    self.events = list(events or [])


class FeedbackTruncatedError(FeedbackProtocolError):
  """The stream ended before its final frame was complete."""


class FeedbackDecoder(object):
  """Turns the bytes of a feedback stream into L{Frame} objects.

  Feed it the bytes as they arrive, in pieces of any size; each call returns
  the frames completed by that piece.  At the end of the body call
  L{Finish}, which returns the final frame or raises if the stream was
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

  def Feed(self, data):
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

  def Finish(self):
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
