"""Ganeti's daemons that serve HTTP, and the facts about them that
C{ganeti-http} needs.

In Ganeti 3.0 (and 3.1) two daemons call C{HttpServer}: the node daemon
(C{ganeti.server.noded}, as root, port 1811, client certificates required)
and the RAPI daemon (C{ganeti.server.rapi}, as C{gnt-rapi}, port 5080).
Their paths are Ganeti's defaults as Debian builds it, under
C{$GANETI_ROOTDIR} when that is set (L{ganeti_paths}).
"""

import collections
import importlib
import os
import socket

from ganeti.http.backends import ganeti_paths

#: Ganeti's tool that starts and stops its daemons (its verbs: start, stop,
#: check, check-and-start, ...; there is no restart).
DAEMON_UTIL = "/usr/lib/ganeti/daemon-util"

HttpDaemon = collections.namedtuple("HttpDaemon", [
  "name",         # the name the backend flag uses: "noded"
  "program",      # Ganeti's name for it: "ganeti-noded"
  "user",         # who Ganeti runs it as
  "default_port",
  "certificate",  # its certificate and key, relative to $localstatedir
  "verify_peer",  # whether clients must present a certificate
  "handler",      # (module, class) of its HttpServerHandler
  "every_node",   # runs on every node (RAPI: only on the master)
])

DAEMONS = (
  HttpDaemon("noded", "ganeti-noded", "root", 1811, "lib/ganeti/server.pem",
             True, ("ganeti.server.noded", "NodeRequestHandler"), True),
  HttpDaemon("rapi", "ganeti-rapi", "gnt-rapi", 5080, "lib/ganeti/rapi.pem",
             False, ("ganeti.server.rapi", "RemoteApiHandler"), False),
)

NAMES = tuple(daemon.name for daemon in DAEMONS)


def Find(name):
  """The L{HttpDaemon} called C{name} ("noded" or "ganeti-noded").

  @raise KeyError: no such daemon serves HTTP
  """
  for daemon in DAEMONS:
    if name in (daemon.name, daemon.program):
      return daemon
  raise KeyError(name)


def CertificatePath(daemon, environ=os.environ):
  """The daemon's certificate file (certificate and key in one)."""
  return ganeti_paths.LocalStatePath(daemon.certificate, environ)


def PidFile(daemon, environ=os.environ):
  """The pid file Ganeti's daemon-util keeps for the daemon."""
  return os.path.join(ganeti_paths.RunDir(environ), daemon.program + ".pid")


def Port(daemon):
  """The daemon's port: C{/etc/services}, else Ganeti's default (as
  Ganeti's C{netutils.GetDaemonPort})."""
  try:
    return socket.getservbyname(daemon.program, "tcp")
  except OSError:
    return daemon.default_port


def HandlerClass(daemon):
  """The daemon's handler class from the Ganeti tree this runs in, or
  Ganeti's base handler class outside a Ganeti tree (the lighttpd
  configuration depends on the handler only through its request body
  limits)."""
  (module, name) = daemon.handler
  try:
    return getattr(importlib.import_module(module), name)
  except ImportError:
    from ganeti.http import server  # pylint: disable=import-outside-toplevel
    return server.HttpServerHandler


def RestartCommands(daemon):
  """The commands that restart the daemon, Ganeti's way."""
  return [[DAEMON_UTIL, "stop", daemon.program],
          [DAEMON_UTIL, "start", daemon.program]]
