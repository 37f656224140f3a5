"""Serve Ganeti 3.0's own RAPI or node daemon handler over our ganeti.http.

Run with C{PYTHONPATH} naming a tree from L{tests.ganeti_package}, so that
C{import ganeti} is Ganeti 3.0 with this project's C{ganeti.http}.  The
backend is whatever C{GANETI_HTTP_BACKEND} selects.

  ganeti_daemon.py rapi --cert PEM --users FILE [--reqauth]
  ganeti_daemon.py noded --cert PEM --node-digest DIGEST

C{HttpServer} is called the way Ganeti 3.0's daemons call it (main loop
first, then address, port, max_clients and handler; noded with a
C{(conn, cert, errnum, errdepth, ok)} callback).  Once the server is
started, one JSON line C{{"port": ..., "backend": ..., "http": ...}} goes to
stdout; the server runs until stdin is closed, then stops and the process
exits 0.
"""

import argparse
import json
import logging
import os
import sys


class _Mainloop(object):
  """Stands in for C{ganeti.daemon.Mainloop}.

  Ganeti's own resolves the cluster's user and group names on creation,
  which a test machine does not have; C{HttpServer} only takes the object.
  """


class _FakeLuxiClient(object):
  """Stands in for the master daemon's client RAPI resources submit jobs to.

  C{SubmitJob} answers with the opcode IDs of the job, so a test can see the
  request went all the way through Ganeti's resource code.
  """

  def SubmitJob(self, ops):  # pylint: disable=invalid-name
    return ",".join(op.OP_ID for op in ops)


def _NodedVerifyCallback(server_digest, node_digest):
  """A 3.0-style peer check accepting only the node certificate.

  Ganeti's own C{SSLVerifyPeer} reads ssconf and the cluster certificate
  under /var/lib/ganeti; this one does the same comparisons against the
  test's certificates.
  """
  def _Verify(conn, cert, errnum, errdepth, ok):  # pylint: disable=unused-argument
    digest = cert.digest("sha1").decode("ascii")
    if errdepth > 0:
      return digest == server_digest
    return digest == node_digest
  return _Verify


def _BuildRapi(args):
  from ganeti.server import rapi  # pylint: disable=import-outside-toplevel
  users = rapi.RapiUsers()
  if not users.Load(args.users):
    raise SystemExit("Cannot load the RAPI users file %s" % args.users)
  handler = rapi.RemoteApiHandler(users.Get, args.reqauth,
                                  _client_cls=_FakeLuxiClient)
  return (handler, {"ssl_verify_peer": False})


def _BuildNoded(args, ssl_params):
  from ganeti.server import noded  # pylint: disable=import-outside-toplevel
  handler = noded.NodeRequestHandler()
  callback = _NodedVerifyCallback(ssl_params.GetCertificateDigest(),
                                  args.node_digest)
  return (handler, {"ssl_verify_peer": True, "ssl_verify_callback": callback})


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("daemon", choices=["rapi", "noded"])
  parser.add_argument("--cert", required=True,
                      help="PEM file with the server's key and certificate")
  parser.add_argument("--users", help="RAPI users file")
  parser.add_argument("--reqauth", action="store_true",
                      help="RAPI: require authentication for every request")
  parser.add_argument("--node-digest",
                      help="noded: SHA-1 digest of the accepted client cert")
  parser.add_argument("--address", default="127.0.0.1")
  parser.add_argument("--max-clients", type=int, default=20)
  args = parser.parse_args()

  logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                      format="%(asctime)s %(levelname)s %(message)s")

  from ganeti import http  # pylint: disable=import-outside-toplevel
  import ganeti.http.server  # pylint: disable=import-outside-toplevel,unused-import

  ssl_params = http.HttpSslParams(ssl_key_path=args.cert,
                                  ssl_cert_path=args.cert)
  if args.daemon == "rapi":
    (handler, ssl_options) = _BuildRapi(args)
  else:
    (handler, ssl_options) = _BuildNoded(args, ssl_params)

  server = http.server.HttpServer(_Mainloop(), args.address, 0,
                                  args.max_clients, handler,
                                  ssl_params=ssl_params, **ssl_options)
  server.Start()
  try:
    sys.stdout.write(json.dumps({
      "port": server.server_address[1],
      "backend": server.backend,
      "http": os.path.dirname(os.path.abspath(http.__file__)),
    }) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
  finally:
    server.Stop()


if __name__ == "__main__":
  main()
