"""Serve a handler as the FastCGI application of a system lighttpd.

For the deployment where lighttpd runs as a service and spawns the backend
itself (``bin-path``; see docs/lighttpd.md and
``ganeti.http.backends.fastcgi.lighttpd.config.render_system_config``)::

    python3 -m shims.fastcgi_launcher mypackage.mymodule:MakeHandler \\
        [--tls] [--verify-callback mypackage.mymodule:Verify]

``MakeHandler()`` returns the ``HttpServerHandler`` to serve.  lighttpd
passes the FastCGI socket as standard input and sets
``GANETI_HTTP_FASTCGI_SPAWNED=1``, so ``HttpServer`` serves that socket
instead of starting a lighttpd of its own.  ``--tls`` says lighttpd
terminates TLS for this site (then the client certificate lighttpd verified
is checked with the callback, as Ganeti's daemons check it).

A Ganeti daemon needs no launcher: started by lighttpd with the same
environment, its own ``HttpServer`` call does the same.  SIGTERM (what
lighttpd sends its backends when it stops) ends the launcher once the
requests in progress are done.
"""

import argparse
import importlib
import logging
import signal
import sys
import threading

from ganeti.http import server as http_server
from ganeti.http.backends import selection
from ganeti.http.core import server_options


def LoadObject(spec):
  """Import "package.module:name" and return that object."""
  (module_name, _, name) = spec.partition(":")
  if not module_name or not name:
    raise ValueError("Expected module:name, not %r" % spec)
  return getattr(importlib.import_module(module_name), name)


class _TlsTerminatedByLighttpd(object):
  """Stands in for C{HttpSslParams}: the key and certificate are lighttpd's
  business here; the backend only needs to know that TLS is on."""


def main(argv=None):
  """Serve until SIGTERM or SIGINT."""
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("handler_factory", help="module:callable returning"
                      " the HttpServerHandler")
  parser.add_argument("--tls", action="store_true",
                      help="lighttpd terminates TLS for this site")
  parser.add_argument("--verify-callback", metavar="MODULE:NAME",
                      help="check client certificates' digests with it"
                      " (implies --tls)")
  parser.add_argument("--daemon-name", default=None)
  parser.add_argument("--max-clients", type=int, default=20)
  args = parser.parse_args(argv)
  if not selection.SpawnedByLighttpd():
    parser.error("not spawned by lighttpd (GANETI_HTTP_FASTCGI_SPAWNED is"
                 " not set); use ganeti.http.server.HttpServer directly")
  logging.basicConfig(level=logging.INFO,
                      format="%(asctime)s %(levelname)s %(message)s")
  handler = LoadObject(args.handler_factory)()
  callback = args.verify_callback and LoadObject(args.verify_callback)
  tls = args.tls or callback is not None
  options = server_options.ServerOptions(
    "127.0.0.1", 0, handler,
    ssl_params=_TlsTerminatedByLighttpd() if tls else None,
    ssl_verify_peer=callback is not None, ssl_verify_callback=callback,
    max_clients=args.max_clients, daemon_name=args.daemon_name)
  server = http_server.HttpServer.FromOptions(options)
  stop = threading.Event()
  for signum in (signal.SIGTERM, signal.SIGINT):
    signal.signal(signum, lambda *_: stop.set())
  try:
    server.Start()
  except LookupError as err:  # lighttpd is gone already
    logging.error("%s; exiting", err)
    sys.exit(1)
  stop.wait()
  server.Stop()


if __name__ == "__main__":
  main()
