"""Run one bench target in this process until standard input closes.

  python -m bench.serve {legacy,fastcgi,static} [--tls PEM] [--client-digest D]
      [--signature {dev,3.0}] [--streaming DIR | --docroot DIR]
      [--address ADDRESS] [--port PORT]

C{legacy} and C{fastcgi} start C{ganeti.http.server.HttpServer} with the
bench's JSON handler, or with C{--streaming DIR} the handler of the
streamed rows (L{bench.streaming}, C{GET /file/NAME} returning DIR/NAME);
which backend that is, and how many FastCGI processes, come from the
environment (C{GANETI_HTTP_BACKEND}, C{GANETI_HTTP_FASTCGI_PROCESSES}), as
for a daemon; C{--signature 3.0} calls it as Ganeti 3.0/3.1's daemons do
(a stand-in main loop first; a forked child per connection).  C{static} starts a plain lighttpd serving the JSON handler's
answer as a file, or with C{--docroot DIR} the files of DIR.

Prints one JSON line C{{"address": ..., "port": ..., "pid": ...}} once
serving, then waits
for end-of-file (or SIGTERM) on standard input and stops everything.
"""

import argparse
import json
import os
import signal
import sys

from ganeti import http as ganeti_http
from ganeti.http import server as http_server

from bench import static_lighttpd
from bench import streaming
from bench import workload


class _StandInMainloop(object):
  """What Ganeti 3.0/3.1 pass as C{mainloop}; C{HttpServer} only takes it."""


def _ReleasedVerifyCallback(client_digest):
  """Ganeti 3.0's C{ssl_verify_callback(conn, cert, errnum, errdepth, ok)}
  accepting only C{client_digest}."""
  expected = client_digest.encode("ascii")
  return lambda _conn, cert, _errnum, _errdepth, ok: (
    bool(ok) and cert.digest("sha1") == expected)


def _NewHttpServer(signature, handler, tls_pem, client_digest, max_clients,
                   address, port):
  """C{HttpServer} on C{address} and C{port} (0: any), called the
  C{signature} way."""
  kwargs = {"daemon_name": "bench"}
  if tls_pem:
    kwargs["ssl_params"] = ganeti_http.HttpSslParams(tls_pem, tls_pem)
    kwargs["ssl_verify_peer"] = True
  if signature == "3.0":
    if tls_pem:
      kwargs["ssl_verify_callback"] = _ReleasedVerifyCallback(client_digest)
    return http_server.HttpServer(_StandInMainloop(), address, port,
                                  max_clients, handler, **kwargs)
  if tls_pem:
    kwargs["ssl_verify_callback"] = lambda digest: digest == client_digest
  return http_server.HttpServer(address, port, handler,
                                max_clients=max_clients, **kwargs)


class _Server(object):
  """C{HttpServer} with the bench handler, as a target."""

  def __init__(self, backend, signature, tls_pem, client_digest, max_clients,
               handler, address="127.0.0.1", port=0):
    self._server = _NewHttpServer(signature, handler, tls_pem, client_digest,
                                  max_clients, address, port)
    if self._server.backend != backend:
      raise SystemExit("Asked for backend %s, got %s" %
                       (backend, self._server.backend))
    (self.address, self.port) = self._server.server_address[:2]

  def Start(self):
    """Serve in the background."""
    self._server.Start()

  def Stop(self):
    """Stop serving."""
    self._server.Stop()


def _Target(args):
  if args.target == "static":
    return static_lighttpd.StaticLighttpd(workload.PATH,
                                          workload.RESPONSE_BODY,
                                          tls_pem=args.tls,
                                          verify_peer=bool(args.tls),
                                          docroot=args.docroot)
  if args.streaming:
    handler = streaming.StreamingHandler(args.streaming)
  else:
    handler = workload.JsonHandler()
  return _Server(args.target, args.signature, args.tls, args.client_digest,
                 args.max_clients, handler, args.address, args.port)


def _ParseArgs(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("target", choices=("legacy", "fastcgi", "static"))
  parser.add_argument("--tls", metavar="PEM",
                      help="serve HTTPS with this key+certificate file and"
                           " require client certificates it signed")
  parser.add_argument("--client-digest",
                      help="the only client certificate digest accepted")
  parser.add_argument("--signature", choices=("dev", "3.0"), default="dev",
                      help="call HttpServer as Ganeti's development branch"
                           " does (threads) or as 3.0/3.1 do (a forked"
                           " child per connection)")
  parser.add_argument("--max-clients", type=int, default=20,
                      help="HttpServer's max_clients (default: %(default)s,"
                           " Ganeti's default)")
  parser.add_argument("--streaming", metavar="DIR",
                      help="serve the streamed rows' handler (legacy,"
                           " fastcgi), returning DIR/NAME for"
                           " GET /file/NAME")
  parser.add_argument("--docroot", metavar="DIR",
                      help="serve the files of DIR (static)")
  parser.add_argument("--address", default="127.0.0.1",
                      help="address to listen on (legacy, fastcgi; default:"
                           " %(default)s)")
  parser.add_argument("--port", type=int, default=0,
                      help="port to listen on (legacy, fastcgi; default:"
                           " any free one)")
  return parser.parse_args(argv)


def _WaitForEndOfInput():
  """Block until stdin closes; SIGTERM ends the wait too."""
  signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
  try:
    while os.read(sys.stdin.fileno(), 4096):
      pass
  except SystemExit:
    pass


def main(argv=None):
  """Start the target, announce it, serve until told to stop."""
  args = _ParseArgs(argv)
  target = _Target(args)
  target.Start()
  try:
    sys.stdout.write(json.dumps({
      "address": getattr(target, "address", "127.0.0.1"),
      "port": target.port, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    _WaitForEndOfInput()
  finally:
    target.Stop()


if __name__ == "__main__":
  main()
