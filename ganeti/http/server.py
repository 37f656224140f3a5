"""Ganeti's HTTP server API: C{HttpServer}, C{HttpServerHandler} and friends.

C{HttpServer(...)} reads the daemon's backend flag (see
L{ganeti.http.backends.selection}) and returns a server of that backend
(the table is in L{ganeti.http.backends}):

- C{legacy}: the threaded stdlib server
  (L{ganeti.http.backends.legacy.server}), which *is* an
  C{http.server.HTTPServer}, as in Ganeti 3.2;
- C{fastcgi}: lighttpd in front of the handler running as a FastCGI
  application (L{ganeti.http.backends.fastcgi.server}), imported only then.

Both take either of Ganeti's calling conventions (see
L{ganeti.http.core.server_options}) and run requests through the same
L{ganeti.http.core.pipeline}.
"""

import logging

from ganeti.http import SHIM_VERSION
from ganeti.http import backends
from ganeti.http.backends import selection
from ganeti.http.backends.legacy import request_handler
from ganeti.http.backends.legacy import server as legacy_server
from ganeti.http.core import pipeline
from ganeti.http.core import responder
from ganeti.http.core.server_options import ServerOptions

# Public names of Ganeti's module, defined where they are used.
DEFAULT_ERROR_CONTENT_TYPE = pipeline.DEFAULT_ERROR_CONTENT_TYPE
DEFAULT_ERROR_MESSAGE = pipeline.DEFAULT_ERROR_MESSAGE
HttpServerHandler = pipeline.HttpServerHandler
_HttpServerRequest = pipeline._HttpServerRequest  # pylint: disable=protected-access
_FormatCertificateDigest = pipeline._FormatCertificateDigest  # pylint: disable=protected-access
GanetiRequestHandler = request_handler.GanetiRequestHandler
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


class HttpServer(legacy_server.LegacyHttpServer):
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

  @raise selection.BackendFlagError: the flag has an unknown value or
      the selected backend cannot run here
  """

  def __new__(cls, *args, **kwargs):
    return cls.FromOptions(ServerOptions.FromCall(*args, **kwargs))

  def __init__(self, *args, **kwargs):  # pylint: disable=super-init-not-called
    """Done by L{FromOptions}, which C{__new__} calls."""

  @classmethod
  def FromOptions(cls, options):
    """Create the server for L{ServerOptions} on the flagged backend."""
    choice = selection.Choose(options.daemon_name)
    logging.info("HTTP backend of %s: %s (from %s), ganeti-http-shim %s",
                 choice.daemon_name, choice.backend, choice.source,
                 SHIM_VERSION)
    server_class = backends.ServerClass(choice.backend)
    if not issubclass(cls, server_class):
      return server_class(options, choice)
    # This class is the legacy server itself (Ganeti's code and tests use
    # it as one): made here, as __init__ does nothing.
    server = super().__new__(cls)
    server_class.__init__(server, options, choice)
    return server
