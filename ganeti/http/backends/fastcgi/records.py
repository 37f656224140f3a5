"""FastCGI records without sockets: decoding received bytes, encoding
records to send, and the name-value pairs of an FCGI_PARAMS stream.

flup receives each record with a C{select()} and two or three C{recv()}
calls and decodes the CGI variables one pair at a time; lighttpd sends a
whole small request (begin, parameters, body) in one go, so
L{RecordDecoder} takes whatever one C{recv()} returned and yields every
complete record in it.  The records it yields are flup's C{Record} objects,
so flup's connection code dispatches them unchanged.
"""

import struct

from flup.server import fcgi_base

#: Length of a FastCGI record header.
HEADER_LENGTH = fcgi_base.FCGI_HEADER_LEN

_HEADER = struct.Struct(fcgi_base.FCGI_Header)
_LONG_LENGTH = struct.Struct("!I")


class ProtocolError(ValueError):
  """The peer sent something that is not FastCGI."""


class RecordDecoder(object):
  """Splits a received byte stream into FastCGI records."""

  def __init__(self):
    self._buffer = bytearray()

  def Feed(self, data):
    """Add received bytes."""
    self._buffer += data

  def MissingBytes(self):
    """How many more bytes the next record needs at least (0: complete).

    @raise ProtocolError: the record is not FastCGI version 1
    """
    if len(self._buffer) < HEADER_LENGTH:
      return HEADER_LENGTH - len(self._buffer)
    (_, _, content_length, padding_length) = self._Header()
    length = HEADER_LENGTH + content_length + padding_length
    return max(0, length - len(self._buffer))

  def _Header(self):
    """Type, request id, content and padding lengths of the next record."""
    (version, record_type, request_id, content_length, padding_length) = \
      _HEADER.unpack_from(self._buffer)
    if version != fcgi_base.FCGI_VERSION_1:
      raise ProtocolError("Not a FastCGI version 1 record (version %d)" %
                          version)
    return (record_type, request_id, content_length, padding_length)

  def NextRecord(self):
    """Remove and return the next complete record, or None.

    @rtype: C{flup.server.fcgi_base.Record}
    @raise ProtocolError: the record is not FastCGI version 1
    """
    if len(self._buffer) < HEADER_LENGTH:
      return None
    (record_type, request_id, content_length, padding_length) = \
      self._Header()
    end = HEADER_LENGTH + content_length
    if len(self._buffer) < end + padding_length:
      return None
    record = fcgi_base.Record(record_type, request_id)
    record.contentLength = content_length
    record.paddingLength = padding_length
    with memoryview(self._buffer) as view:
      record.contentData = bytes(view[HEADER_LENGTH:end])
    # Deleting from the front of a bytearray moves no data.
    del self._buffer[:end + padding_length]
    return record


def RecordBuffers(record_type, request_id, content):
  """The header, content and padding of one record, as a list of buffers
  for C{socket.sendmsg} (the content is not copied)."""
  padding = -len(content) & 7
  header = _HEADER.pack(fcgi_base.FCGI_VERSION_1, record_type, request_id,
                        len(content), padding)
  if padding:
    return [header, content, b"\0" * padding]
  return [header, content]


def DecodeParams(data):
  """The name-value pairs of a complete FCGI_PARAMS stream, as a dict of
  str (decoded as latin-1, as flup does).

  This runs for every request (lighttpd sends about 25 variables), hence
  the lengths decoded in line rather than by a function per length.

  @raise ProtocolError: the stream ends inside a pair
  """
  # latin-1 maps each byte to one character, so byte offsets are also
  # offsets into the decoded text: decode once, then slice.
  text = data.decode("latin-1")
  params = {}
  position = 0
  end = len(data)
  try:
    while position < end:
      name_length = data[position]
      if name_length < 0x80:
        position += 1
      else:
        name_length = _LONG_LENGTH.unpack_from(data, position)[0] & 0x7fffffff
        position += 4
      value_length = data[position]
      if value_length < 0x80:
        position += 1
      else:
        value_length = (_LONG_LENGTH.unpack_from(data, position)[0] &
                        0x7fffffff)
        position += 4
      name_end = position + name_length
      position = name_end + value_length
      if position > end:
        raise ProtocolError("FCGI_PARAMS stream ends inside a pair")
      params[text[name_end - name_length:name_end]] = text[name_end:position]
  except (IndexError, struct.error):
    raise ProtocolError("FCGI_PARAMS stream ends inside a length") from None
  return params


def EncodePair(name, value):
  """One name-value pair of an FCGI_PARAMS or FCGI_GET_VALUES stream."""
  return (_EncodeLength(len(name)) + _EncodeLength(len(value)) +
          name.encode("latin-1") + value.encode("latin-1"))


def _EncodeLength(length):
  if length < 0x80:
    return bytes([length])
  return _LONG_LENGTH.pack(length | 0x80000000)
