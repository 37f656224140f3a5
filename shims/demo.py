"""A small node-daemon-like server, to try ganeti.http by hand.

``make demo`` runs it on the fastcgi backend (``make demo DEMO_ARGS=
--legacy`` for the legacy backend): HTTPS on 127.0.0.1 with certificates
made for the occasion, client certificates required, and four procedures in
the style of Ganeti's node daemon:

- ``POST /version``: answers ``[true, <protocol version>]``;
- ``POST /echo``: answers ``[true, <the JSON body it got>]``;
- ``POST /copy``: a long operation (``{"steps": N}``) that reports its
  progress as RPC feedback to clients that ask for it (docs/feedback.md);
- ``GET /download?size=N``: N bytes, streamed as they are generated.

It prints the commands that reach it (curl, and ``shims.demo_client`` for
the progress bars) and serves until interrupted.
"""

import argparse
import json
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.parse

from ganeti import http as ganeti_http
from ganeti.http import feedback
from ganeti.http import server as http_server

PROTOCOL_VERSION = 3000000
DEMO_DIR = "demo-run"


class DemoNodeHandler(http_server.HttpServerHandler):
  """JSON procedures over POST, answered as ``[success, payload]``, plus a
  streamed ``GET /download``."""

  def HandleRequest(self, req):
    (path, _, query) = req.request_path.partition("?")
    if path == "/download" and req.request_method == ganeti_http.HTTP_GET:
      return self._Download(req, urllib.parse.parse_qs(query))
    if req.request_method != ganeti_http.HTTP_POST:
      raise ganeti_http.HttpBadRequest("Only the POST method is supported")
    procedure = path.lstrip("/")
    try:
      args = json.loads(req.request_body or b"null")
    except ValueError as err:
      raise ganeti_http.HttpBadRequest("Body is not JSON: %s" % err)
    if procedure == "copy":
      return feedback.RespondWithFeedback(req, self._Copy(args or {}))
    if procedure == "version":
      result = PROTOCOL_VERSION
    elif procedure == "echo":
      result = args
    else:
      raise ganeti_http.HttpNotFound("No procedure %r" % procedure)
    req.resp_headers[ganeti_http.HTTP_CONTENT_TYPE] = ganeti_http.HTTP_APP_JSON
    return json.dumps([True, result])

  @staticmethod
  def _Copy(args):
    """Pretend to copy a disk, reporting each step."""
    steps = int(args.get("steps", 20))
    for step in range(1, steps + 1):
      time.sleep(0.1)
      yield {"done": step, "total": steps}
    return [True, "copied %d blocks" % steps]

  @staticmethod
  def _Download(req, query):
    size = int(query.get("size", ["0"])[0])
    block = b"\0" * min(size, 1 << 20)
    req.resp_headers[ganeti_http.HTTP_CONTENT_TYPE] = (
      ganeti_http.HTTP_APP_OCTET_STREAM)
    req.resp_headers[ganeti_http.HTTP_CONTENT_LENGTH] = str(size)
    return (block[:min(len(block), size - offset)]
            for offset in range(0, size, max(len(block), 1)))


def _Openssl(*args):
  subprocess.run(("openssl", ) + args, check=True, stdout=subprocess.DEVNULL,
                 stderr=subprocess.DEVNULL)


def MakeCertificates(directory):
  """Write a cluster certificate (server cert and CA) and a node client
  certificate signed by it; return their paths."""
  os.makedirs(directory, exist_ok=True)
  cluster = os.path.join(directory, "cluster.pem")
  node = os.path.join(directory, "node.pem")
  if not os.path.exists(cluster):
    key = os.path.join(directory, "cluster.key")
    _Openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "30",
             "-subj", "/CN=cluster.demo", "-keyout", key, "-out", cluster)
    _Concatenate(cluster, key)
  if not os.path.exists(node):
    key = os.path.join(directory, "node.key")
    csr = os.path.join(directory, "node.csr")
    _Openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
             "ec_paramgen_curve:prime256v1", "-nodes", "-subj",
             "/CN=node1.demo", "-keyout", key, "-out", csr)
    _Openssl("x509", "-req", "-in", csr, "-CA", cluster, "-CAkey", cluster,
             "-CAcreateserial", "-days", "30", "-out", node)
    _Concatenate(node, key)
  # The files hold private keys: the demo's user only (lighttpd reads them
  # before it gives up root).
  for path in (directory, cluster, node):
    os.chmod(path, 0o700 if path == directory else 0o600)
  return (cluster, node)


def _Concatenate(cert_path, key_path):
  """Append the key to the certificate file, as Ganeti's server.pem has."""
  with open(key_path) as key, open(cert_path, "a") as cert:
    cert.write(key.read())
  os.unlink(key_path)


def main():
  """Run the demo server until SIGINT or SIGTERM."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--legacy", action="store_true",
                      help="serve with the legacy backend")
  parser.add_argument("--port", type=int, default=1811)
  args = parser.parse_args()
  logging.basicConfig(level=logging.INFO,
                      format="%(asctime)s %(levelname)s %(message)s")
  os.environ.setdefault("GANETI_HTTP_BACKEND_DEMO",
                        "legacy" if args.legacy else "fastcgi")
  (cluster, node) = MakeCertificates(os.path.abspath(DEMO_DIR))
  ssl_params = ganeti_http.HttpSslParams(cluster, cluster)
  accepted = {ssl_params.GetCertificateDigest(),
              ganeti_http.HttpSslParams(node, node).GetCertificateDigest()}
  server = http_server.HttpServer(
    "127.0.0.1", args.port, DemoNodeHandler(), ssl_params=ssl_params,
    ssl_verify_peer=True, ssl_verify_callback=accepted.__contains__,
    daemon_name="demo")
  server.Start()
  curl = ("curl --silent --show-error --insecure --cert %s"
          " https://127.0.0.1:%d" % (os.path.relpath(node), args.port))
  # POST with a body, even empty: lighttpd answers 411 to a POST without
  # Content-Length (docs/compatibility.md).
  print("\nServing on https://127.0.0.1:%d with the %s backend. Try:\n"
        "  %s/version -d ''\n"
        "  %s/echo -d '{\"hello\": \"node\"}'\n"
        "  curl --insecure https://127.0.0.1:%d/version -d ''"
        "   # refused: no client certificate\n"
        "  .venv/bin/python -m shims.demo_client --port %d copy"
        "       # RPC feedback as a progress bar\n"
        "  .venv/bin/python -m shims.demo_client --port %d download"
        "   # 1 GiB streamed\n"
        "Stop with Ctrl-C.\n" % (args.port, server.backend, curl, curl,
                                 args.port, args.port, args.port),
        flush=True)
  stop = threading.Event()
  for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda *_: stop.set())
  stop.wait()
  server.Stop()


if __name__ == "__main__":
  main()
