"""Response bodies: what a handler may return, as a backend writes it.

C{HandleRequest} may return:

- C{str} (sent as UTF-8) or C{bytes}: one body of known length;
- an iterator of C{str}/C{bytes} chunks, usually a generator: each chunk
  is sent as soon as it is produced (chunked for HTTP/1.1 clients);
- a binary file object: sent in pieces; when it is a regular file its size
  becomes the Content-Length and a backend may hand the file to the kernel
  or to lighttpd (X-Sendfile) instead of copying it through Python.

Anything else is the handler's error (500), as in Ganeti.  No sockets here.
"""

import collections.abc
import io
import logging
import os
import stat

from ganeti import http as ganeti_http

#: Size of the pieces a file body is read in.
FILE_CHUNK_SIZE = 256 * 1024


class StreamAborted(Exception):
  """The handler failed after the response had started.

  The backend must end the response so that the client sees it as
  incomplete (no final chunk, a short body or a reset connection).
  """


def ToBytes(text_or_bytes):
  """UTF-8 for str, plain C{bytes} for bytes (and its subclasses).

  @raise UnicodeEncodeError: C{str} with a lone surrogate
  """
  if type(text_or_bytes) is bytes:  # pylint: disable=unidiomatic-typecheck
    return text_or_bytes
  if isinstance(text_or_bytes, str):
    return text_or_bytes.encode("utf-8")
  return bytes(text_or_bytes)


class ResponseStream(object):
  """A body produced piece by piece: iterate for bytes chunks, then close.

  Iteration raises L{StreamAborted} if the producer fails; L{close} closes
  the producer (a generator's C{finally} blocks run), which a backend must
  do however the response ends, including when the client went away.

  @ivar length: the body's length when known in advance, else None
  @ivar file_path: path of the regular file the body is, else None
  @ivar file_identity: C{(st_dev, st_ino)} of that file, else None
  """

  def __init__(self, chunks, close, length=None, file_path=None,
               file_identity=None):
    self._chunks = chunks
    self._close = close
    self.length = length
    self.file_path = file_path
    self.file_identity = file_identity

  def __iter__(self):
    return self

  def __next__(self):
    try:
      chunk = next(self._chunks)
      if not isinstance(chunk, (str, bytes)):
        raise TypeError("Response chunk of type %s, not str or bytes" %
                        type(chunk).__name__)
      return ToBytes(chunk)
    except StopIteration:
      raise
    except Exception as err:
      logging.exception("Response body failed after the response started")
      raise StreamAborted(str(err))

  def close(self):
    """Close the producer; safe to call more than once."""
    close, self._close = self._close, None
    if close is not None:
      close()


def CheckedLength(chunks, declared_length):
  """Yield C{chunks}, raising L{StreamAborted} unless they add up to
  C{declared_length} (when not None): a body must match its
  Content-Length."""
  sent = 0
  for chunk in chunks:
    sent += len(chunk)
    if declared_length is not None and sent > declared_length:
      raise StreamAborted("Body longer than its Content-Length %d" %
                          declared_length)
    yield chunk
  if declared_length is not None and sent != declared_length:
    raise StreamAborted("Body of %d bytes, Content-Length %d" %
                        (sent, declared_length))


def _FileStream(fileobj):
  length = path = identity = None
  try:
    info = os.fstat(fileobj.fileno())
    name = getattr(fileobj, "name", None)
    if stat.S_ISREG(info.st_mode) and _SizeIsTrue(info, name):
      length = info.st_size - fileobj.tell()
      if isinstance(name, str) and os.path.isabs(name) and not fileobj.tell():
        (path, identity) = (name, (info.st_dev, info.st_ino))
  except (AttributeError, OSError, ValueError):
    pass  # not backed by a file descriptor: stream it without a length
  return ResponseStream(_FilePieces(fileobj), fileobj.close, length=length,
                        file_path=path, file_identity=identity)


#: Kernel file systems whose regular files do not know their size: /proc
#: says 0, /sys 4096, whatever they hold.
_SIZELESS_FILE_SYSTEMS = ("/proc/", "/sys/")


def _SizeIsTrue(info, name):
  """Whether a regular file's C{st_size} is its length."""
  if not info.st_size:
    return False  # empty, or a kernel file that says so: read to the end
  if isinstance(name, str):
    real = os.path.realpath(name)
    return not real.startswith(_SIZELESS_FILE_SYSTEMS)
  return True


def _FilePieces(fileobj):
  """The contents of C{fileobj}, read piece by piece until a read returns
  nothing."""
  while True:
    piece = fileobj.read(FILE_CHUNK_SIZE)
    if not piece:
      return
    yield piece


def FromHandlerResult(result):
  """Turn what C{HandleRequest} returned into bytes or a L{ResponseStream}.

  A generator is advanced to its first chunk here, so that an error it
  raises before producing anything (an C{HttpException} such as 404, say)
  is still answered with its own status.

  @raise ganeti.http.HttpInternalServerError: the result has no usable type
  """
  if isinstance(result, (str, bytes)):
    return ToBytes(result)
  if isinstance(result, io.TextIOBase):
    result.close()
    raise ganeti_http.HttpInternalServerError(
      "Handler function returned a text file; a file must be opened in"
      " binary mode")
  if hasattr(result, "read"):
    return _FileStream(result)
  if isinstance(result, collections.abc.Iterator):
    return _PrimedStream(result)
  raise ganeti_http.HttpInternalServerError(
    "Handler function didn't return string type (got %s)" %
    type(result).__name__)


def _PrimedStream(iterator):
  """A stream of C{iterator} whose first chunk has already been produced."""
  close = getattr(iterator, "close", lambda: None)
  try:
    first = next(iterator)
  except StopIteration:
    close()
    return ResponseStream(iter(()), lambda: None, length=0)
  except BaseException:
    close()
    raise
  return ResponseStream(_Chain(first, iterator), close)


def _Chain(first, rest):
  yield first
  yield from rest
