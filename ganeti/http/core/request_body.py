"""Request bodies: length checks, de-chunking and a streaming view.

No sockets here: every reader takes a C{read(n)} function of the layer
below (the stdlib server's C{rfile}, flup's C{wsgi.input}); only the
errors such a function raises are known.

A handler normally gets the whole body as bytes (C{request_body}), capped
at a size limit.  A handler class with C{STREAM_REQUEST_BODY = True} gets
C{request_body_stream} instead, a L{RequestBodyStream} it reads while the
data arrives, with no cap unless it sets C{REQUEST_BODY_LIMIT} (bytes).
"""

import socket
import string

from ganeti import http as ganeti_http

#: Longest chunk-size line accepted in a chunked body, extensions included,
#: and most trailer lines after it (each no longer than that).
_MAX_CHUNK_LINE = 4096
_MAX_TRAILER_LINES = 64

_HEX_DIGITS = frozenset(string.hexdigits)


class HttpRequestEntityTooLarge(ganeti_http.HttpException):
  """413: the request body is larger than the server accepts.

  Ganeti's package has no class for 413; the server raises this one.
  """
  code = 413


def ParseContentLength(value, limit):
  """Return the body length announced by a Content-Length header value.

  @param value: the header's value, or None when absent (length 0)
  @param limit: largest length accepted, or None for no limit
  @raise ganeti.http.HttpBadRequest: the value is not a plain decimal number
  @raise HttpRequestEntityTooLarge: the length exceeds C{limit}
  """
  if value is None:
    return 0
  value = value.strip()
  # int() would accept "+5", " 5", "5_0": none of them is a valid length.
  if not value.isdigit() or not value.isascii():
    raise ganeti_http.HttpBadRequest("Invalid Content-Length %r" % value)
  length = int(value)
  _CheckLimit(length, limit)
  return length


def _CheckLimit(length, limit):
  if limit is not None and length > limit:
    raise HttpRequestEntityTooLarge(
      "Request body too large (%d bytes or more, limit %d)" % (length, limit))


class RequestBodyStream(object):
  """A request body, read as it arrives.

  @param read: C{read(n)} of the layer below; returns up to C{n} bytes,
      C{b""} at its end
  @param length: the announced length, or None when the layer below
      delimits the body itself (a de-chunked body)
  @param limit: largest body accepted, or None
  """

  def __init__(self, read, length, limit=None):
    self._read = read
    self._length = length
    self._limit = limit
    self.bytes_read = 0

  def read(self, size=-1):
    """Return up to C{size} bytes (all that is left if negative); C{b""}
    at the end of the body.

    Both backends fail the same way when the client does not send its
    whole body: the handler sees an C{HttpException}, never the transport's
    own error.

    @raise ganeti.http.HttpBadRequest: the client sent less than announced,
        or its connection broke
    @raise ganeti.http.HttpRequestTimeout: the client stopped sending (the
        legacy backend's socket timeout)
    @raise HttpRequestEntityTooLarge: the body grew past the limit
    """
    if size is None or size < 0:
      return b"".join(iter(lambda: self.read(1 << 20), b""))
    if self._length is not None:
      size = min(size, self._length - self.bytes_read)
    if size == 0:
      return b""
    try:
      data = self._read(size)
    except socket.timeout:
      raise ganeti_http.HttpRequestTimeout(
        "Request body not received in time (got %d bytes)" % self.bytes_read)
    except (EOFError, OSError) as err:
      # EOFError: flup's, when lighttpd closes the FastCGI connection.
      raise ganeti_http.HttpBadRequest(
        "Request body cut short: connection lost after %d bytes (%s)" %
        (self.bytes_read, type(err).__name__))
    if not data and self._length is not None:
      raise ganeti_http.HttpBadRequest(
        "Request body incomplete: got %d of %d bytes" %
        (self.bytes_read, self._length))
    self.bytes_read += len(data)
    _CheckLimit(self.bytes_read, self._limit)
    return data


class DechunkingReader(object):
  """Decodes an HTTP/1.1 chunked body; C{read(n)} returns decoded bytes.

  Strict: a chunk size is hex digits only (no "0x", "+", "_" or spaces),
  optionally followed by ";" extensions, which are ignored, as are
  trailers.

  @param rfile: a binary file object positioned at the body
  """

  def __init__(self, rfile):
    self._rfile = rfile
    self._left_in_chunk = 0
    self._done = False

  def read(self, size):
    """Return up to C{size} decoded bytes; C{b""} after the last chunk.

    @raise ganeti.http.HttpBadRequest: the framing is malformed or cut short
    """
    if self._done or size <= 0:
      return b""
    if self._left_in_chunk == 0:
      self._left_in_chunk = self._ReadChunkSize()
      if self._left_in_chunk == 0:
        self._SkipTrailers()
        self._done = True
        return b""
    data = self._rfile.read(min(size, self._left_in_chunk))
    if not data:
      raise ganeti_http.HttpBadRequest("Chunked request body cut short")
    self._left_in_chunk -= len(data)
    if self._left_in_chunk == 0 and self._ReadLine() != b"":
      raise ganeti_http.HttpBadRequest("Chunk not followed by CRLF")
    return data

  def _ReadLine(self):
    line = self._rfile.readline(_MAX_CHUNK_LINE + 1)
    if not line.endswith(b"\r\n") or len(line) > _MAX_CHUNK_LINE:
      raise ganeti_http.HttpBadRequest("Malformed chunked request body")
    return line[:-2]

  def _ReadChunkSize(self):
    text = self._ReadLine().split(b";", 1)[0].decode("latin-1")
    if not text or not _HEX_DIGITS.issuperset(text):
      raise ganeti_http.HttpBadRequest("Invalid chunk size %r" % text)
    return int(text, 16)

  def _SkipTrailers(self):
    for _ in range(_MAX_TRAILER_LINES + 1):  # and the empty line ending them
      if not self._ReadLine():
        return
    raise ganeti_http.HttpBadRequest("Too many trailer lines in chunked"
                                     " request body")
