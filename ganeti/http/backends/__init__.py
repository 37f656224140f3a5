"""The HTTP server backends a daemon's flag chooses between.

Each backend's name maps to the module and class of its server; a server
module is imported only when its backend is asked for, so a daemon on the
legacy backend never imports flup or any part of the fastcgi backend.
Which backend a daemon gets is decided in L{selection}; what both servers
share is L{base.ServerBase}.
"""

import importlib

LEGACY = "legacy"
FASTCGI = "fastcgi"

#: Backend name -> (module, class) of its server; both classes take
#: C{(options, daemon_name, flag_source)}.
_SERVERS = {
  LEGACY: ("ganeti.http.backends.legacy.server", "LegacyHttpServer"),
  FASTCGI: ("ganeti.http.backends.fastcgi.server", "FastCgiHttpServer"),
}

#: The backends there are.
NAMES = frozenset(_SERVERS)


def ServerClass(name):
  """Import the server module of backend C{name}; return its server class.

  @raise KeyError: there is no such backend
  """
  (module, class_name) = _SERVERS[name]
  return getattr(importlib.import_module(module), class_name)
