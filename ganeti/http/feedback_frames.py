"""The frames of the RPC feedback stream, and the server side that writes them.

A frame is a compact JSON object followed by the separator byte ETX
(C{0x03}), as in Ganeti's LUXI protocol.  This module holds the wire
format's constants, L{Frame} (one decoded frame), the encoding of one frame
(L{EncodeMessage} and its three kinds) and L{FeedbackStream}, which turns a
streaming method's generator into the frames to send.  No sockets.  The
public API is L{ganeti.http.feedback}; see C{docs/feedback.md}.
"""

import json
import logging

#: Content type of a feedback stream.  Not C{+json}: the body is a sequence
#: of JSON texts, not one, so generic JSON parsers must not be handed it.
FEEDBACK_CONTENT_TYPE = "application/vnd.ganeti.feedback"

#: The byte that ends every frame (ETX, as in LUXI).
SEPARATOR = b"\x03"

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
