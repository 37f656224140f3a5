"""The RPC feedback protocol: progress messages streamed before a result.

A streaming RPC method is a generator: it yields feedback messages while it
works and returns the method's result.  On the wire the response body is a
sequence of frames, each a compact JSON object followed by the separator
byte ETX (C{0x03}), as in Ganeti's LUXI protocol:

  - C{{"feedback": <message>}} for every message the method yields;
  - then exactly one final frame, C{{"result": <value>}} when the method
    returned, or C{{"error": "<text>"}} when it raised.

A stream without a final frame was cut short.  See C{docs/feedback.md}.

The codec has no sockets, like h11: the server side (L{FeedbackStream},
in L{ganeti.http.feedback_frames} with the wire format) turns a generator
into the bytes to send, the client side (L{FeedbackDecoder}, in
L{ganeti.http.feedback_decoder}) turns the bytes received, however they
were split, into L{Frame} objects.  This module is the codec's public API
(every name is here) and what the HTTP client and handlers call to wire it
up: L{RespondWithFeedback}, L{ClientAcceptsFeedback}, L{ResultBody}.
"""

import json

from ganeti.http import feedback_decoder
from ganeti.http import feedback_frames

# The public names of the codec, defined where they are used: the wire
# format and the server side in feedback_frames, the client's decoder in
# feedback_decoder.
FEEDBACK_CONTENT_TYPE = feedback_frames.FEEDBACK_CONTENT_TYPE
SEPARATOR = feedback_frames.SEPARATOR
FRAME_FEEDBACK = feedback_frames.FRAME_FEEDBACK
FRAME_RESULT = feedback_frames.FRAME_RESULT
FRAME_ERROR = feedback_frames.FRAME_ERROR
FRAME_KINDS = feedback_frames.FRAME_KINDS
FINAL_KINDS = feedback_frames.FINAL_KINDS
Frame = feedback_frames.Frame
EncodeMessage = feedback_frames.EncodeMessage
EncodeFeedback = feedback_frames.EncodeFeedback
EncodeResult = feedback_frames.EncodeResult
EncodeError = feedback_frames.EncodeError
ErrorText = feedback_frames.ErrorText
FeedbackStream = feedback_frames.FeedbackStream
IsFeedbackContentType = feedback_frames.IsFeedbackContentType
DEFAULT_MAX_FRAME_SIZE = feedback_decoder.DEFAULT_MAX_FRAME_SIZE
FeedbackProtocolError = feedback_decoder.FeedbackProtocolError
FeedbackTruncatedError = feedback_decoder.FeedbackTruncatedError
FeedbackDecoder = feedback_decoder.FeedbackDecoder


class FeedbackRemoteError(Exception):
  """The method failed on the server: the stream ended with an error frame.

  @ivar message: the error text the server sent
  """

  def __init__(self, message):
    Exception.__init__(self, message)
    self.message = message


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
