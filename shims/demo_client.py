"""Client of the demo server (shims.demo): progress bars over ganeti.http.

- ``copy``: calls ``POST /copy`` with ``feedback_fn`` and draws each
  feedback message as it arrives;
- ``download``: fetches ``GET /download?size=N`` into a file, drawing the
  bytes received so far.

Both go through Ganeti's pycurl client (``HttpClientRequest`` and
``ProcessRequests``) with the demo's client certificate.
"""

import argparse
import json
import os
import sys

import pycurl

from ganeti.http import client as http_client
from shims import demo

_BAR_WIDTH = 40


def DrawBar(label, done, total, stream=sys.stdout):
  """Redraw a one-line progress bar."""
  filled = int(_BAR_WIDTH * done / total) if total else _BAR_WIDTH
  stream.write("\r%-10s [%s%s] %3d%%" % (label, "#" * filled,
                                         "." * (_BAR_WIDTH - filled),
                                         100 * done // max(total, 1)))
  stream.flush()


def _CurlConfig(node_cert, cluster_cert):
  def _Configure(curl):
    curl.setopt(pycurl.CAINFO, cluster_cert)
    curl.setopt(pycurl.SSL_VERIFYHOST, 0)
    curl.setopt(pycurl.SSLCERT, node_cert)
    curl.setopt(pycurl.SSLKEY, node_cert)
  return _Configure


class _ProgressFile(object):
  """A file that draws how much has been written to it."""

  def __init__(self, target, total):
    self._target = target
    self._total = total
    self._written = 0

  def write(self, data):
    self._target.write(data)
    self._written += len(data)
    DrawBar("download", self._written, self._total)
    return len(data)


def _Run(request):
  http_client.ProcessRequests([request])
  print()
  if not request.success:
    sys.exit("Request failed: %s" % request.error)
  return request


def main():
  """Run one demo call against a running shims.demo server."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--port", type=int, default=1811)
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--size", type=int, default=1 << 30)
  parser.add_argument("call", choices=["copy", "download"])
  args = parser.parse_args()
  cluster = os.path.join(demo.DEMO_DIR, "cluster.pem")
  node = os.path.join(demo.DEMO_DIR, "node.pem")
  configure = _CurlConfig(node, cluster)
  if args.call == "copy":
    request = _Run(http_client.HttpClientRequest(
      "127.0.0.1", args.port, "POST", "/copy",
      post_data=json.dumps({"steps": args.steps}),
      headers=["Content-Type: application/json"], curl_config_fn=configure,
      feedback_fn=lambda msg: DrawBar("copy", msg["done"], msg["total"])))
    print("result: %s" % request.resp_body.strip())
  else:
    with open(os.devnull, "wb") as sink:
      _Run(http_client.HttpClientRequest(
        "127.0.0.1", args.port, "GET", "/download?size=%d" % args.size,
        curl_config_fn=configure,
        response_file=_ProgressFile(sink, args.size)))


if __name__ == "__main__":
  main()
