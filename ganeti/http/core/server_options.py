"""The arguments of C{HttpServer}, whichever way Ganeti passes them.

Ganeti has called C{HttpServer} in two ways:

- current (3.2): C{HttpServer(local_address, port, ganeti_handler,
  ssl_params=None, ssl_verify_peer=False, ssl_verify_callback=None,
  max_clients=20)}, the callback taking the client certificate's digest;
- released 3.0/3.1: C{HttpServer(mainloop, local_address, port, max_clients,
  handler, ssl_params=None, ssl_verify_peer=False,
  request_executor_class=None, ssl_verify_callback=None)}, the callback
  taking pyOpenSSL's C{(conn, cert, errnum, errdepth, ok)}.

L{ServerOptions.FromCall} accepts both (plus this project's C{daemon_name}
keyword) and gives every backend the same record, with the callback turned
into the digest form.
"""

import inspect
import ipaddress
import socket


_CURRENT_SIGNATURE = inspect.Signature([
  inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=default)
  for (name, default) in [
    ("local_address", inspect.Parameter.empty),
    ("port", inspect.Parameter.empty),
    ("ganeti_handler", inspect.Parameter.empty),
    ("ssl_params", None),
    ("ssl_verify_peer", False),
    ("ssl_verify_callback", None),
    ("max_clients", 20),
  ]] + [inspect.Parameter("daemon_name", inspect.Parameter.KEYWORD_ONLY,
                          default=None)])

_RELEASED_SIGNATURE = inspect.Signature([
  inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=default)
  for (name, default) in [
    ("mainloop", inspect.Parameter.empty),
    ("local_address", inspect.Parameter.empty),
    ("port", inspect.Parameter.empty),
    ("max_clients", inspect.Parameter.empty),
    ("handler", inspect.Parameter.empty),
    ("ssl_params", None),
    ("ssl_verify_peer", False),
    ("request_executor_class", None),
    ("ssl_verify_callback", None),
  ]] + [inspect.Parameter("daemon_name", inspect.Parameter.KEYWORD_ONLY,
                          default=None)])


def AddressFamily(address):
  """Return C{AF_INET} or C{AF_INET6} for an IP literal.

  @raise ValueError: C{address} is not an IPv4 or IPv6 literal
  """
  try:
    parsed = ipaddress.ip_address(address)
  except ValueError:
    raise ValueError("Not an IPv4 or IPv6 address: %r" % (address, ))
  if parsed.version == 6:
    return socket.AF_INET6
  return socket.AF_INET


class _LeafCertificate(object):
  """Stands in for pyOpenSSL's C{X509} when calling a 3.0/3.1 callback.

  Only C{digest("sha1")} is offered: the one method Ganeti's callbacks use.
  """

  def __init__(self, sha1_digest):
    self._sha1_digest = sha1_digest

  def digest(self, name):  # pylint: disable=invalid-name
    """Return the digest as bytes ("AB:CD:..."), like pyOpenSSL."""
    if name.lower().replace("-", "") != "sha1":
      raise ValueError("Only the sha1 digest of the client certificate is"
                       " available, not %r" % (name, ))
    return self._sha1_digest.encode("ascii")


class _ReleasedCallbackAdapter(object):
  """Calls a 3.0/3.1 C{(conn, cert, errnum, errdepth, ok)} callback.

  The TLS layer has already verified the client's chain against the server
  certificate (what those callbacks checked at depth > 0), and only the leaf
  certificate reaches the application, so the callback runs once, at depth
  0, with C{ok=1} and no connection object.
  """

  def __init__(self, callback):
    self.callback = callback

  def __call__(self, digest):
    return self.callback(None, _LeafCertificate(digest), 0, 0, 1)


class ServerOptions(object):
  """Everything a backend needs to serve a Ganeti handler.

  @ivar local_address: IPv4 or IPv6 literal to bind to
  @ivar port: TCP port (0: any free port)
  @ivar handler: the C{HttpServerHandler}
  @ivar ssl_params: C{HttpSslParams} or None for plain HTTP
  @ivar ssl_verify_peer: whether client certificates are required (with
      TLS only: without C{ssl_params} it does nothing, as in Ganeti)
  @ivar ssl_verify_callback: C{callback(digest) -> bool} or None
  @ivar max_clients: requests served at once
  @ivar daemon_name: name used to look up the backend flag, or None
  @ivar mainloop: the 3.0/3.1 main loop argument (unused), or None
  """

  def __init__(self, local_address, port, handler, ssl_params=None,
               ssl_verify_peer=False, ssl_verify_callback=None,
               max_clients=20, daemon_name=None, mainloop=None):
    self.local_address = local_address
    self.port = port
    self.handler = handler
    self.ssl_params = ssl_params
    self.ssl_verify_peer = bool(ssl_verify_peer)
    self.ssl_verify_callback = ssl_verify_callback
    self.max_clients = max_clients
    self.daemon_name = daemon_name
    self.mainloop = mainloop
    self.address_family = AddressFamily(local_address)
    if max_clients < 1:
      raise ValueError("max_clients must be at least 1, not %r" %
                       (max_clients, ))

  @classmethod
  def FromCall(cls, *args, **kwargs):
    """Build the options from C{HttpServer}'s arguments (either form)."""
    if _IsReleasedCall(args, kwargs):
      bound = _RELEASED_SIGNATURE.bind(*args, **kwargs)
      bound.apply_defaults()
      values = bound.arguments
      callback = values["ssl_verify_callback"]
      if callback is not None:
        callback = _ReleasedCallbackAdapter(callback)
      return cls(values["local_address"], values["port"], values["handler"],
                 ssl_params=values["ssl_params"],
                 ssl_verify_peer=values["ssl_verify_peer"],
                 ssl_verify_callback=callback,
                 max_clients=values["max_clients"],
                 daemon_name=values["daemon_name"],
                 mainloop=values["mainloop"])
    bound = _CURRENT_SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    values = bound.arguments
    return cls(values["local_address"], values["port"],
               values["ganeti_handler"], ssl_params=values["ssl_params"],
               ssl_verify_peer=values["ssl_verify_peer"],
               ssl_verify_callback=values["ssl_verify_callback"],
               max_clients=values["max_clients"],
               daemon_name=values["daemon_name"])


def _IsReleasedCall(args, kwargs):
  """Whether C{HttpServer} was called the 3.0/3.1 way.

  The current form starts with the address (a str); the released one with
  the main loop object.
  """
  if args:
    return not isinstance(args[0], str)
  return "mainloop" in kwargs
