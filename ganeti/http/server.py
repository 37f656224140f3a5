"""Ganeti's HTTP server API: C{HttpServer}, C{HttpServerHandler} and friends.

C{HttpServer(...)} reads the daemon's backend flag (see
L{ganeti.http.backend_flag}) and returns a server of that backend:

- C{legacy}: the threaded stdlib server (L{ganeti.http.legacy}), which *is*
  an C{http.server.HTTPServer}, as in Ganeti 3.2;
- C{fastcgi}: lighttpd in front of the handler running as a FastCGI
  application (L{ganeti.http.fastcgi_server}).

Both take either of Ganeti's calling conventions (see
L{ganeti.http.server_options}) and run requests through the same
L{ganeti.http.pipeline}.
"""

import logging

from ganeti.http import SHIM_VERSION
from ganeti.http import backend_flag
from ganeti.http import legacy
from ganeti.http import pipeline
from ganeti.http import responder
from ganeti.http.server_options import ServerOptions

# Public names of Ganeti's module, defined where they are used.
DEFAULT_ERROR_CONTENT_TYPE = pipeline.DEFAULT_ERROR_CONTENT_TYPE
DEFAULT_ERROR_MESSAGE = pipeline.DEFAULT_ERROR_MESSAGE
HttpServerHandler = pipeline.HttpServerHandler
_HttpServerRequest = pipeline._HttpServerRequest  # pylint: disable=protected-access
_FormatCertificateDigest = pipeline._FormatCertificateDigest  # pylint: disable=protected-access
GanetiRequestHandler = legacy.GanetiRequestHandler
HttpResponder = responder.HttpResponder  # 3.0/3.1's RAPI test helper uses it


class HttpServerRequestExecutor(object):
  """Ganeti 3.0/3.1 ran each connection in a forked executor of this class.

  Both backends serve in threads (or, for fastcgi, in processes of their
  own), so this class is never instantiated; it exists because 3.0/3.1
  daemons subclass it (noded's C{MlockallRequestExecutor}) and pass the
  subclass as C{request_executor_class}, which L{HttpServer} accepts and
  ignores.
  """

  def __init__(self, *args, **kwargs):
    raise NotImplementedError("Request executors are not used by this"
                              " HTTP server")


class HttpServer(legacy.LegacyHttpServer):
  """The HTTP server of a Ganeti daemon, on the backend its flag selects.

  Accepts C{HttpServer(local_address, port, ganeti_handler, ssl_params=None,
  ssl_verify_peer=False, ssl_verify_callback=None, max_clients=20)} and the
  3.0/3.1 form C{HttpServer(mainloop, local_address, port, max_clients,
  handler, ssl_params=None, ssl_verify_peer=False,
  request_executor_class=None, ssl_verify_callback=None)}, each with an
  optional C{daemon_name=} keyword naming the daemon for the backend flag
  (default: the program's name without its "ganeti-" prefix).

  The server is bound when this returns; C{Start()} serves, C{Stop()}
  stops.  C{backend} says which backend it is.

  @raise backend_flag.BackendFlagError: the flag has an unknown value or
      the selected backend cannot run here
  """

  def __new__(cls, *args, **kwargs):
    return cls.FromOptions(ServerOptions.FromCall(*args, **kwargs))

  def __init__(self, *args, **kwargs):  # pylint: disable=super-init-not-called
    """Done by L{FromOptions}, which C{__new__} calls."""

  @classmethod
  def FromOptions(cls, options):
    """Create the server for L{ServerOptions} on the flagged backend."""
    daemon_name = options.daemon_name or backend_flag.DefaultDaemonName()
    (backend, source) = backend_flag.ResolveBackend(daemon_name)
    logging.info("HTTP backend of %s: %s (from %s), ganeti-http-shim %s",
                 daemon_name, backend, source, SHIM_VERSION)
    if backend == backend_flag.BACKEND_FASTCGI:
      # Imported here: the legacy backend must not need flup or lighttpd.
      from ganeti.http import fastcgi_server  # pylint: disable=import-outside-toplevel
      return fastcgi_server.FastCgiHttpServer(options, source)
    server = super().__new__(cls)
    legacy.LegacyHttpServer.__init__(server, options)
    return server
