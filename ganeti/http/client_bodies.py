"""Where the HTTPS client's request and response bodies come from and go.

L{ResponseBody} picks, for an L{HttpClientRequest<ganeti.http.client.HttpClientRequest>},
the object whose C{Write} is curl's WRITEFUNCTION: a buffer for
C{resp_body}, the request's response file, or a feedback stream decoder.
L{SetRequestBody} gives curl a request's body, through an L{UploadBody}
where the body must not be sent twice or is a file.
"""

import logging
import os
from io import BytesIO

import pycurl

from ganeti.http import client_connections
from ganeti.http import feedback


# A write callback returning another count than it was given aborts the
# transfer (curl then reports CURLE_WRITE_ERROR)
WRITE_ABORT = 0


class BufferedBody(object):
  """Collects the response body in memory, for C{resp_body}."""

  def __init__(self):
    self._buffer = BytesIO()
    self.Write = self._buffer.write

  def Finish(self, errmsg):
    """Return C{(error, resp_body)} once the transfer has ended (bytes that
    are not UTF-8 become U+FFFD rather than failing every request of the
    L{ProcessRequests} call)."""
    return (errmsg, self._buffer.getvalue().decode("utf-8", "replace"))


class FileBody(object):
  """Writes the response body to the request's C{response_file}."""

  def __init__(self, fileobj):
    self._file = fileobj
    self._error = None

  def Write(self, data):
    """curl's WRITEFUNCTION."""
    try:
      self._file.write(data)
    except Exception as err:  # pylint: disable=broad-except
      self._error = "Writing the response body failed: %s" % err
      return WRITE_ABORT
    return None

  def Finish(self, errmsg):
    """Return C{(error, resp_body)}; the body is in the file, so None."""
    return (self._error or errmsg, None)


class _FeedbackFnError(Exception):
  """The caller's feedback function raised (described in the message)."""


class FeedbackBody(object):
  """Decodes a feedback stream as it arrives, or buffers any other body.

  The response's C{Content-Type}, seen by L{Header}, tells which it is.
  """

  def __init__(self, feedback_fn):
    self._feedback_fn = feedback_fn
    self._content_type = None
    self._decoder = None
    self._plain = BufferedBody()
    self._error = None

  def Header(self, line):
    """curl's HEADERFUNCTION: remember the final response's Content-Type."""
    line = line.decode("iso-8859-1")
    if line.startswith("HTTP/"):
      # A new response (after "100 Continue", say): forget the last one's
      self._content_type = None
      return
    (name, sep, value) = line.partition(":")
    if sep and name.strip().lower() == "content-type":
      self._content_type = value.strip()

  def _Decoder(self):
    """The stream's decoder, or None while the body is not a stream."""
    if self._decoder is None and \
        feedback.IsFeedbackContentType(self._content_type):
      self._decoder = feedback.FeedbackDecoder()
    return self._decoder

  def Write(self, data):
    """curl's WRITEFUNCTION: pass on each complete feedback message."""
    if self._error is not None:
      return WRITE_ABORT
    decoder = self._Decoder()
    if decoder is None:
      return self._plain.Write(data)
    try:
      frames = decoder.Feed(data)
    except feedback.FeedbackProtocolError as err:
      (frames, self._error) = (err.events, str(err))
    try:
      self._Deliver(frames)
    except _FeedbackFnError as err:
      # It came first in the stream, before any protocol error
      self._error = str(err)
    if self._error is not None:
      return WRITE_ABORT
    return None

  def _Deliver(self, frames):
    for frame in frames:
      if frame.kind == feedback.FRAME_FEEDBACK:
        try:
          self._feedback_fn(frame.value)
        except Exception as err:  # pylint: disable=broad-except
          logging.exception("Feedback function failed")
          raise _FeedbackFnError("Feedback function failed: %s: %s" %
                                 (type(err).__name__, err))

  def Finish(self, errmsg):
    """Return C{(error, resp_body)} once the transfer has ended."""
    decoder = self._Decoder()
    if decoder is None:
      return self._plain.Finish(errmsg)
    if self._error is not None:
      return (self._error, "")
    if errmsg and decoder.final is None:
      return (errmsg, "")
    # The frames decide: a transport error after the final frame (a missing
    # last chunk, say) does not undo a complete stream.
    try:
      return (None, feedback.ResultBody(decoder.Finish()))
    except feedback.FeedbackProtocolError as err:
      return (str(err), "")
    except feedback.FeedbackRemoteError as err:
      return ("Remote method failed: %s" % err.message, "")


class UploadBody(object):
  """Feeds a request body file to curl's READFUNCTION and SEEKFUNCTION.

  Each request reads at its own offset, so several requests may send the
  same file (Ganeti sends one body to many nodes).  curl may rewind (to
  send the request again on a new connection) only when the body is
  C{resendable} or nothing of it went out yet.

  @ivar size: bytes from C{start} to the file's end
  @ivar error: why reading failed, or why the request was not sent again;
    None if neither happened
  """

  def __init__(self, fileobj, start, resendable=True):
    self._file = fileobj
    self._start = start
    self._resendable = resendable
    self.size = max(0, fileobj.seek(0, os.SEEK_END) - start)
    self._sent = 0
    self.error = None

  def Read(self, size):
    """curl's READFUNCTION."""
    try:
      self._file.seek(self._start + self._sent)
      data = self._file.read(min(size, self.size - self._sent))
    except Exception as err:  # pylint: disable=broad-except
      self.error = "Reading the request body failed: %s" % err
      return pycurl.READFUNC_ABORT
    self._sent += len(data)
    return data

  def Seek(self, offset, origin):
    """curl's SEEKFUNCTION: go back to C{offset} of the body."""
    if origin != os.SEEK_SET or not 0 <= offset <= self.size:
      return pycurl.SEEKFUNC_CANTSEEK
    if not self._resendable and self._sent > 0:
      self.error = NOT_SENT_AGAIN
      return pycurl.SEEKFUNC_CANTSEEK
    self._sent = offset
    return pycurl.SEEKFUNC_OK


#: The error of a request whose connection died after part of it was sent
NOT_SENT_AGAIN = ("The connection closed before a response came, and the"
                  " request was not sent again: the server may have"
                  " executed it")


def ResponseBody(req):
  """Where the response body of C{req} goes, as a C{*Body} object."""
  if req.response_file is not None:
    return FileBody(req.response_file)
  if req.feedback_fn is not None:
    return FeedbackBody(req.feedback_fn)
  return BufferedBody()


def SetRequestBody(curl, req, guard_resend=False):
  """Set C{req.post_data} as the body; return an
  L{UploadBody} or None.

  Like str and bytes bodies, a file goes out as a POST body (whatever
  C{CUSTOMREQUEST} says), so the server sees the same headers either way.

  @param guard_resend: the connection may be a kept one, which libcurl
    sends the request again on a new connection when it dies before the
    response, whatever the method.  Unless the method may be repeated
    (L{client_connections.MayResend}), the body then goes through an
    L{UploadBody} that refuses to be sent a second time,
    and a request without a body gets a new connection
  """
  data = req.post_data
  resendable = not guard_resend or client_connections.MayResend(req.method)
  if hasattr(data, "read"):
    start = req.post_data_start
  elif resendable or not data:
    curl.setopt(pycurl.POSTFIELDS, data)
    if not resendable:
      curl.setopt(pycurl.FRESH_CONNECT, True)
    return None
  else:
    # pycurl sends a str as ASCII
    data = BytesIO(data.encode("ascii") if isinstance(data, str) else data)
    start = 0
  upload = UploadBody(data, start, resendable=resendable)
  curl.setopt(pycurl.POST, True)
  curl.setopt(pycurl.POSTFIELDSIZE_LARGE, upload.size)
  curl.setopt(pycurl.READFUNCTION, upload.Read)
  curl.setopt(pycurl.SEEKFUNCTION, upload.Seek)
  return upload
