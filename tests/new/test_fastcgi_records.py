"""FastCGI record decoding and encoding (ganeti.http.backends.fastcgi.records).

The expected bytes are built here by hand from the FastCGI specification,
not with the module under test.
"""

import struct

import hypothesis
from hypothesis import strategies
import pytest

from ganeti.http.backends.fastcgi import records as fastcgi_records

STDIN = 5
PARAMS = 4


def Record(record_type, content, request_id=1, padding=None, version=1):
  """A record as the specification lays it out."""
  if padding is None:
    padding = -len(content) & 7
  return (struct.pack("!BBHHBx", version, record_type, request_id,
                      len(content), padding) + content + b"\0" * padding)


def Pair(name, value):
  """A name-value pair with 1-byte lengths below 128, 4 bytes above."""
  def _Length(length):
    if length < 128:
      return bytes([length])
    return struct.pack("!I", length | 0x80000000)
  return _Length(len(name)) + _Length(len(value)) + name + value


def _Decode(*feeds):
  decoder = fastcgi_records.RecordDecoder()
  records = []
  for data in feeds:
    decoder.Feed(data)
    while True:
      record = decoder.NextRecord()
      if record is None:
        break
      records.append((record.type, record.requestId, record.contentData))
  return (records, decoder)


def test_several_records_in_one_feed():
  data = Record(STDIN, b"abc") + Record(STDIN, b"") + Record(PARAMS, b"x" * 8)
  (records, decoder) = _Decode(data)
  assert records == [(STDIN, 1, b"abc"), (STDIN, 1, b""),
                     (PARAMS, 1, b"x" * 8)]
  assert decoder.MissingBytes() == fastcgi_records.HEADER_LENGTH


def test_record_split_at_every_byte():
  data = Record(STDIN, b"hello, world", request_id=7, padding=3)
  for cut in range(len(data) + 1):
    (records, _) = _Decode(data[:cut], data[cut:])
    assert records == [(STDIN, 7, b"hello, world")], cut


def test_missing_bytes_counts_content_and_padding():
  data = Record(STDIN, b"12345")  # 5 bytes of content, 3 of padding
  decoder = fastcgi_records.RecordDecoder()
  decoder.Feed(data[:3])
  assert decoder.MissingBytes() == 5
  decoder.Feed(data[3:10])
  assert decoder.MissingBytes() == len(data) - 10
  assert decoder.NextRecord() is None
  decoder.Feed(data[10:])
  assert decoder.MissingBytes() == 0


def test_other_versions_are_refused():
  decoder = fastcgi_records.RecordDecoder()
  decoder.Feed(Record(STDIN, b"", version=2))
  with pytest.raises(fastcgi_records.ProtocolError, match="version 2"):
    decoder.NextRecord()


@hypothesis.given(
  contents=strategies.lists(strategies.binary(max_size=300), max_size=8),
  cuts=strategies.lists(strategies.integers(min_value=0), max_size=10))
def test_any_split_gives_the_records_back(contents, cuts):
  data = b"".join(Record(STDIN, content, request_id=number + 1)
                  for (number, content) in enumerate(contents))
  positions = sorted({cut % (len(data) + 1) for cut in cuts})
  feeds = [data[start:end] for (start, end)
           in zip([0] + positions, positions + [len(data)])]
  (records, _) = _Decode(*feeds)
  assert records == [(STDIN, number + 1, content)
                     for (number, content) in enumerate(contents)]


@pytest.mark.parametrize("size", [0, 1, 7, 8, 9, 65528, 65535])
def test_encoded_records_follow_the_specification(size):
  content = bytes(range(256)) * (size // 256) + bytes(size % 256)
  buffers = fastcgi_records.RecordBuffers(STDIN, 3, memoryview(content))
  encoded = b"".join(bytes(buffer) for buffer in buffers)
  assert encoded == Record(STDIN, content, request_id=3)
  assert len(encoded) % 8 == 0


def test_params_short_and_long_lengths():
  long_value = b"v" * 300
  long_name = b"N" * 200
  data = (Pair(b"REQUEST_METHOD", b"POST") + Pair(b"EMPTY", b"") +
          Pair(b"SSL_CLIENT_CERT", long_value) + Pair(long_name, b"x") +
          Pair(b"LATIN", "caf\u00e9".encode("latin-1")))
  assert fastcgi_records.DecodeParams(data) == {
    "REQUEST_METHOD": "POST",
    "EMPTY": "",
    "SSL_CLIENT_CERT": "v" * 300,
    "N" * 200: "x",
    "LATIN": "caf\u00e9",
  }


@pytest.mark.parametrize("data", [
  b"\x05",                        # a name length, no value length
  b"\x85\x00",                    # a 4-byte length cut short
  Pair(b"NAME", b"value")[:-1],   # the value cut short
])
def test_params_cut_short_are_refused(data):
  with pytest.raises(fastcgi_records.ProtocolError):
    fastcgi_records.DecodeParams(data)


@hypothesis.given(strategies.dictionaries(
  strategies.binary(min_size=1, max_size=200),
  strategies.binary(max_size=300), max_size=10))
def test_params_round_trip(pairs):
  data = b"".join(Pair(name, value) for (name, value) in pairs.items())
  assert fastcgi_records.DecodeParams(data) == {
    name.decode("latin-1"): value.decode("latin-1")
    for (name, value) in pairs.items()}
