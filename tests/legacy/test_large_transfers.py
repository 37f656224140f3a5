"""256 MiB in and out through each backend, over TLS with Ganeti's client:
checksums match, and lighttpd's memory stays flat (it streams)."""

import hashlib
import os

import pytest

from ganeti.http import client
from ganeti.http import server as http_server
from tests.conftest import SslParams
from tests.legacy.test_client import _CurlConfig

SIZE = 256 * 1024 * 1024
_BLOCK = os.urandom(1 << 20)


def _Pattern(size):
  """C{size} bytes of a repeated random block, block by block."""
  for offset in range(0, size, len(_BLOCK)):
    yield _BLOCK[:min(len(_BLOCK), size - offset)]


def _Digest(chunks):
  digest = hashlib.sha256()
  for chunk in chunks:
    digest.update(chunk)
  return digest.hexdigest()


class TransferHandler(http_server.HttpServerHandler):
  """PUT hashes the body as it arrives; GET streams SIZE bytes."""

  STREAM_REQUEST_BODY = True

  def HandleRequest(self, req):
    if req.request_method == "PUT":
      stream = req.request_body_stream
      return _Digest(iter(lambda: stream.read(1 << 20), b""))
    return _Pattern(SIZE)


class _HashingFile(object):
  def __init__(self):
    self.digest = hashlib.sha256()
    self.size = 0

  def write(self, data):
    self.digest.update(data)
    self.size += len(data)
    return len(data)


def _PeakRssKiB(pid):
  with open("/proc/%d/status" % pid) as status:
    for line in status:
      if line.startswith("VmHWM:"):
        return int(line.split()[1])
  raise AssertionError("no VmHWM for %d" % pid)


@pytest.fixture
def transfer_server(serve, pki):
  return serve(TransferHandler(), ssl_params=SslParams(pki.cluster),
               ssl_verify_peer=True, ssl_verify_callback=lambda _: True)


def _Request(running, pki, method, **kwargs):
  request = client.HttpClientRequest(
    "127.0.0.1", running.port, method, "/transfer", read_timeout=120,
    curl_config_fn=_CurlConfig(pki.cluster, pki.node), **kwargs)
  client.ProcessRequests([request])
  assert request.success, request.error
  assert request.resp_status_code == 200
  return request


def test_256_mib_upload(transfer_server, pki, tmp_path):
  path = tmp_path / "upload.bin"
  with open(str(path), "wb") as handle:
    for chunk in _Pattern(SIZE):
      handle.write(chunk)
  with open(str(path), "rb") as handle:
    request = _Request(transfer_server, pki, "PUT", post_data=handle)
  assert request.resp_body == _Digest(_Pattern(SIZE))
  _CheckLighttpdMemory(transfer_server)


def test_256_mib_download(transfer_server, pki):
  sink = _HashingFile()
  _Request(transfer_server, pki, "GET", response_file=sink)
  assert (sink.size, sink.digest.hexdigest()) == (SIZE,
                                                  _Digest(_Pattern(SIZE)))
  _CheckLighttpdMemory(transfer_server)


def _CheckLighttpdMemory(running):
  supervisor = getattr(running.server, "_supervisor", None)
  if supervisor is not None:
    assert _PeakRssKiB(supervisor.pid) < 64 * 1024
