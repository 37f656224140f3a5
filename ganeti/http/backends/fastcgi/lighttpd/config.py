"""lighttpd configurations for the fastcgi backend, rendered from settings.

Pure: nothing here touches the file system or a process; the supervisor
(L{supervisor}) writes, checks and runs the text.
docs/lighttpd.md explains every directive written here.

Two deployments share one renderer:

  - L{Render}: lighttpd started by the daemon, in front of a backend that
    already listens on its Unix socket(s) ("socket", never "bin-path");
  - L{RenderSystemConfig}: lighttpd run as a system service that spawns
    the daemon itself as its FastCGI application ("bin-path").

Every value is written in lighttpd's syntax by L{syntax}, which refuses
what that syntax cannot carry, so no setting can inject configuration.
"""

import dataclasses
import ipaddress
import os
from typing import Optional, Tuple, Union

from ganeti import http
from ganeti.http.backends import selection
from ganeti.http.backends.fastcgi.lighttpd import access_log
from ganeti.http.backends.fastcgi.lighttpd import limits
from ganeti.http.backends.fastcgi.lighttpd import syntax
from ganeti.http.backends.fastcgi.lighttpd.layout import StateLayout
from ganeti.http.core import tls

#: Longest Unix socket path, in bytes (C{sun_path} minus its NUL).
_MAX_SOCKET_PATH = 107

#: lighttpd's default seconds for in-flight requests after SIGINT.
DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT = 8

#: lighttpd's own default for server.max-write-idle (seconds), kept.
DEFAULT_WRITE_IDLE_TIMEOUT = 360

#: server.max-keep-alive-idle for RPC traffic (lighttpd's: 5 s): a job's
#: RPCs come seconds apart, an idle connection costs the node one fd.  The
#: client reuses connections idle for less (client_connections.MAX_IDLE_AGE)
#: so a request never starts on a connection lighttpd is closing.
DEFAULT_KEEP_ALIVE_IDLE = 30
#: server.max-keep-alive-requests (lighttpd's: 1000); the last response
#: says Connection: close.  Higher, as RPCs are small and frequent.
DEFAULT_KEEP_ALIVE_REQUESTS = 10000

#: Largest idle timeout lighttpd 1.4 takes: it keeps them in an unsigned
#: short, and larger values wrap (65536 would mean 0 s).
MAX_IDLE_TIMEOUT = 65535

#: Seconds a connection may stay silent before its first request is read:
#: in the TLS handshake, in the request head, and in a request body.
#: lighttpd's own 60 s let idle connections from one address hold all its
#: connections (docs/lighttpd.md, "Limits").
DEFAULT_READ_IDLE_TIMEOUT = 10


@dataclasses.dataclass(frozen=True)
class FrontendSettings(object):
  """What lighttpd needs to know to front a FastCGI backend.

  @ivar bind_address: IPv4 or IPv6 literal to listen on
  @ivar port: TCP port, 1-65535 (with C{socket_activation}, the port the
      inherited socket is actually bound to, never 0)
  @ivar fastcgi_socket: the backend's Unix socket, or a tuple of sockets of
      several backend processes that lighttpd balances between
  @ivar state_dir: directory for the pid file, error log, upload temporary
      files and the empty document root (see L{StateLayout})
  @ivar ssl_cert_path: server certificate (PEM); None serves plain HTTP
  @ivar ssl_key_path: its private key (PEM; may be the same file)
  @ivar ssl_chain_path: the server certificate followed by its chain, used
      instead of C{ssl_cert_path} as the presented chain (as in Ganeti)
  @ivar ssl_verify_peer: require a client certificate that chains to the
      server's own certificate, and pass it to the backend as
      C{SSL_CLIENT_CERT}
  @ivar max_request_body: largest request body in bytes, 0 for no limit;
      lighttpd counts in KiB, so this is rounded up to a whole KiB
  @ivar stream_request_body: hand the body to the backend while it arrives
      (lighttpd then answers 411 to a chunked body without Content-Length)
  @ivar read_idle_timeout: seconds a client may stay silent in the TLS
      handshake, in its first request head, or in a request body (not
      between requests: that is C{keep_alive_idle})
  @ivar write_idle_timeout: seconds a client may take to accept response
      data; also how long lighttpd waits for the backend's next piece of a
      response once it has started
  @ivar keep_alive_idle: seconds an idle keep-alive connection is kept
  @ivar keep_alive_requests: requests a keep-alive connection serves
      before lighttpd closes it
  @ivar max_fds: file descriptors lighttpd raises its limit to and uses
      (L{limits.ReachableMaxFds}), of which L{limits.MaxConnections} for
      client connections; None leaves lighttpd's default (its soft limit,
      at most 4096, a third of them for connections)
  @ivar username: user lighttpd switches to when started as root
  @ivar groupname: group lighttpd switches to when started as root
  @ivar socket_activation: lighttpd inherits the listening socket (fd 3,
      C{LISTEN_FDS}/C{LISTEN_PID}) instead of binding it
  @ivar server_tag: the C{Server} header of responses lighttpd makes itself
  @ivar graceful_shutdown_timeout: seconds lighttpd lets requests in flight
      finish after SIGINT before closing them (0: wait for all)
  @ivar http2: offer HTTP/2 (off: Ganeti's clients speak HTTP/1.x)
  @ivar access_log: path of an access log, None for none
  @ivar request_log: write the daemon's request log: every request's line
      (L{access_log.FORMAT}) to the pipe the daemon passes
      (L{access_log}); not together with an C{access_log} path
  @ivar sendfile_dirs: directories whose files the backend may ask lighttpd
      to send itself (C{X-Sendfile}); empty: X-Sendfile is off
  """
  bind_address: str
  port: int
  fastcgi_socket: Union[str, Tuple[str, ...]]
  state_dir: str
  ssl_cert_path: Optional[str] = None
  ssl_key_path: Optional[str] = None
  ssl_chain_path: Optional[str] = None
  ssl_verify_peer: bool = False
  max_request_body: int = 0
  stream_request_body: bool = False
  read_idle_timeout: int = DEFAULT_READ_IDLE_TIMEOUT
  write_idle_timeout: int = DEFAULT_WRITE_IDLE_TIMEOUT
  keep_alive_idle: int = DEFAULT_KEEP_ALIVE_IDLE
  keep_alive_requests: int = DEFAULT_KEEP_ALIVE_REQUESTS
  max_fds: Optional[int] = None
  username: Optional[str] = None
  groupname: Optional[str] = None
  socket_activation: bool = False
  server_tag: str = http.HTTP_GANETI_VERSION
  graceful_shutdown_timeout: int = DEFAULT_GRACEFUL_SHUTDOWN_TIMEOUT
  http2: bool = False
  access_log: Optional[str] = None
  request_log: bool = False
  sendfile_dirs: Tuple[str, ...] = ()

  def __post_init__(self):
    try:
      ipaddress.ip_address(self.bind_address)
    except ValueError:
      raise ValueError("bind_address must be an IPv4 or IPv6 literal, not %r"
                       % (self.bind_address, ))
    _CheckInt("port", self.port, 1, 65535)
    if not self.fastcgi_sockets:
      raise ValueError("fastcgi_socket needs at least one socket path")
    for path in self.fastcgi_sockets:
      _CheckPath("fastcgi_socket", path)
      if len(path.encode()) > _MAX_SOCKET_PATH:
        raise ValueError("fastcgi_socket %r is longer than %d bytes" %
                         (path, _MAX_SOCKET_PATH))
    _CheckPath("state_dir", self.state_dir)
    for path in self.sendfile_dirs:
      _CheckPath("sendfile_dirs", path)
    for name in ("ssl_cert_path", "ssl_key_path", "ssl_chain_path",
                 "access_log"):
      if getattr(self, name) is not None:
        _CheckPath(name, getattr(self, name))
    if self.access_log is not None and self.request_log:
      raise ValueError("access_log and request_log exclude each other")
    if (self.ssl_cert_path is None) != (self.ssl_key_path is None):
      raise ValueError("ssl_cert_path and ssl_key_path go together")
    if self.ssl_cert_path is None and (self.ssl_chain_path is not None or
                                       self.ssl_verify_peer):
      raise ValueError("ssl_chain_path and ssl_verify_peer need"
                       " ssl_cert_path")
    _CheckInt("max_request_body", self.max_request_body, 0)
    _CheckInt("read_idle_timeout", self.read_idle_timeout, 1,
              MAX_IDLE_TIMEOUT)
    _CheckInt("write_idle_timeout", self.write_idle_timeout, 1,
              MAX_IDLE_TIMEOUT)
    _CheckInt("keep_alive_idle", self.keep_alive_idle, 0, MAX_IDLE_TIMEOUT)
    _CheckInt("keep_alive_requests", self.keep_alive_requests, 0)
    if self.max_fds is not None:
      _CheckInt("max_fds", self.max_fds, limits.MIN_FDS, limits.MAX_FDS)
    _CheckInt("graceful_shutdown_timeout", self.graceful_shutdown_timeout, 0)
    for name in ("username", "groupname"):
      if getattr(self, name) is not None and not getattr(self, name):
        raise ValueError("%s must not be empty" % name)

  @property
  def fastcgi_sockets(self):
    """C{fastcgi_socket} as a tuple."""
    if isinstance(self.fastcgi_socket, str):
      return (self.fastcgi_socket, )
    return tuple(self.fastcgi_socket)

  @property
  def tls(self):
    """Whether lighttpd terminates TLS."""
    return self.ssl_cert_path is not None

  @property
  def layout(self):
    """The L{StateLayout} of C{state_dir}."""
    return StateLayout(self.state_dir)


def _CheckInt(name, value, minimum, maximum=None):
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError("%s must be an integer, not %r" % (name, value))
  if value < minimum or (maximum is not None and value > maximum):
    raise ValueError("%s out of range: %d" % (name, value))


def _CheckPath(name, path):
  if not isinstance(path, str) or not os.path.isabs(path):
    raise ValueError("%s must be an absolute path, not %r" % (name, path))


def KibibytesCeiling(size):
  """Return C{size} bytes as whole KiB, rounded up (lighttpd counts KiB)."""
  return -(-size // 1024)


def _BindAddress(address):
  """lighttpd wants IPv6 literals in brackets ("::1" alone is a host name)."""
  parsed = ipaddress.ip_address(address)
  if parsed.version == 6:
    return "[%s]" % parsed
  return str(parsed)


def _ServerDirectives(settings):
  """Yield C{(key, value)} for everything but C{fastcgi.server}."""
  layout = settings.layout
  modules = []
  if settings.tls:
    modules.append("mod_openssl")
  modules.append("mod_fastcgi")
  if settings.access_log is not None or settings.request_log:
    modules.append("mod_accesslog")
  yield ("server.modules", tuple(modules))
  # Load nothing implicitly (mod_staticfile, mod_dirlisting, ...).
  yield ("server.compat-module-load", False)
  yield ("server.document-root", layout.document_root)
  # No server.errorlog: lighttpd's error log is its standard error, which
  # the daemon reads and writes to a file of its own (error_log).
  yield ("server.pid-file", layout.pid_file)
  yield ("server.upload-dirs", (layout.upload_dir, ))
  yield ("server.tag", settings.server_tag)
  if settings.username is not None:
    yield ("server.username", settings.username)
  if settings.groupname is not None:
    yield ("server.groupname", settings.groupname)

  # With socket activation lighttpd matches the inherited socket to this
  # address by its exact sockaddr; if the socket is missing it tries to bind
  # the address itself and fails, as the daemon holds it.  Port 0 would mean
  # lighttpd's default port, hence the port is always explicit and nonzero.
  yield ("server.bind", _BindAddress(settings.bind_address))
  yield ("server.port", settings.port)
  if settings.socket_activation:
    yield ("server.systemd-socket-activation", True)
  if ipaddress.ip_address(settings.bind_address) == ipaddress.IPv6Address("::"):
    # Like Python's servers (and Ganeti's legacy backend): "::" also takes
    # IPv4 clients.  lighttpd's default would be IPv6 only.
    yield ("server.v4mapped", True)

  if settings.max_request_body:
    yield ("server.max-request-size",
           KibibytesCeiling(settings.max_request_body))
  yield ("server.stream-request-body", 2 if settings.stream_request_body else 0)
  yield ("server.stream-response-body", 2)
  # Answers are whole, as from Ganeti's own server: lighttpd would answer a
  # Range request with part of a backend's (or an X-Sendfile) response.
  yield ("server.range-requests", False)
  if settings.sendfile_dirs:
    # lighttpd keeps what it stat()ed and opened for a second: a file
    # replaced since would be sent with its old contents (X-Sendfile).
    yield ("server.stat-cache-engine", "disable")
  # lighttpd reads into buffers of this size (default 8 KiB): 64 KiB, the
  # size of our FastCGI records, relays a 1 GiB stream about 15 % faster
  # (docs/performance.md) for no measurable cost on small requests.
  yield ("server.chunkqueue-chunk-sz", 65536)
  if settings.max_fds is not None:
    # Idle connections from one address must not take every connection a
    # valid client needs (docs/lighttpd.md, "Limits").
    yield ("server.max-fds", settings.max_fds)
    yield ("server.max-connections", limits.MaxConnections(settings.max_fds))
  yield ("server.max-read-idle", settings.read_idle_timeout)
  yield ("server.max-write-idle", settings.write_idle_timeout)
  yield ("server.max-keep-alive-idle", settings.keep_alive_idle)
  yield ("server.max-keep-alive-requests", settings.keep_alive_requests)
  yield ("server.feature-flags", {
    "server.graceful-shutdown-timeout": settings.graceful_shutdown_timeout,
    "server.h2proto": settings.http2,
    })
  if settings.access_log is not None:
    yield ("accesslog.filename", settings.access_log)
  if settings.request_log:
    # The path of the pipe's end lighttpd inherits, which differs from one
    # lighttpd to the next: from lighttpd's environment.
    yield ("accesslog.filename",
           syntax.Environment(selection.ENV_ACCESS_LOG))
    yield ("accesslog.format", access_log.FORMAT)

  if settings.tls:
    yield ("ssl.engine", True)
    # The TLS rules are tls's, as the legacy backend's.
    yield ("ssl.pemfile", tls.PresentedChain(settings.ssl_cert_path,
                                             settings.ssl_chain_path))
    yield ("ssl.privkey", settings.ssl_key_path)
    yield ("ssl.openssl.ssl-conf-cmd",
           {"MinProtocol": tls.MINIMUM_VERSION_OPENSSL})
    if settings.ssl_verify_peer:
      yield ("ssl.verifyclient.activate", True)
      yield ("ssl.verifyclient.enforce", True)
      yield ("ssl.verifyclient.ca-file",
             tls.ClientCertificateAuthority(settings.ssl_cert_path))
      yield ("ssl.verifyclient.exportcert", True)


def _BackendOptions(settings):
  """Options of every backend: the application is mounted at "/", and may
  hand files under C{sendfile_dirs} to lighttpd."""
  options = {
    "check-local": False,
    "fix-root-scriptname": True,
    }
  if settings.sendfile_dirs:
    options["x-sendfile"] = True
    # lighttpd matches these as string prefixes against the resolved paths
    # the backend sends (whoever makes the settings resolves the
    # directories): end each with a slash so "/srv/export" does not also
    # allow "/srv/export-other".
    options["x-sendfile-docroot"] = tuple(
      os.path.join(path, "") for path in settings.sendfile_dirs)
  return options


def _Render(settings, backends):
  """Return the whole configuration text."""
  directives = list(_ServerDirectives(settings))
  directives.append(("fastcgi.server", {"/": tuple(backends)}))
  lines = ["# lighttpd configuration written by"
           " ganeti.http.backends.fastcgi.lighttpd.config;",
           "# see docs/lighttpd.md."]
  lines.extend("%s = %s" % (key, syntax.Value(value))
               for (key, value) in directives)
  return "\n".join(lines) + "\n"


def Render(settings):
  """Return a lighttpd configuration for a daemon that runs lighttpd itself.

  The backend listens on C{settings.fastcgi_sockets} before lighttpd
  starts; lighttpd only connects to them.

  @type settings: L{FrontendSettings}
  @rtype: str
  """
  backends = []
  for path in settings.fastcgi_sockets:
    options = {"socket": path}
    options.update(_BackendOptions(settings))
    backends.append(options)
  return _Render(settings, backends)


def RenderSystemConfig(settings, command, max_procs=1, environment=None):
  """Return a configuration for lighttpd as a service spawning the daemon.

  lighttpd starts C{command} itself ("bin-path") with the FastCGI listening
  socket as its standard input, creating the socket at
  C{settings.fastcgi_socket} plus "-0", "-1", ... per process.  lighttpd
  spawns it after switching to C{settings.username}, so the daemon runs as
  that user; a daemon that needs root must be started on its own and
  fronted with L{Render} instead.

  @type settings: L{FrontendSettings} with a single C{fastcgi_socket}
  @param command: the daemon's argv; lighttpd splits "bin-path" at spaces
      and tabs and knows no quoting, so no argument may contain either
  @param max_procs: number of daemon processes lighttpd keeps running
  @param environment: mapping of extra environment variables for the daemon
      (C{GANETI_HTTP_FASTCGI_SPAWNED=1} is always added, and with
      C{settings.sendfile_dirs} the list of them)
  @rtype: str
  """
  sockets = settings.fastcgi_sockets
  if len(sockets) != 1:
    raise ValueError("lighttpd spawns its backends on one socket path,"
                     " not %r" % (sockets, ))
  command = tuple(command)
  if not command or not os.path.isabs(command[0]):
    raise ValueError("command must start with an absolute program path")
  for arg in command:
    if not arg or " " in arg or "\t" in arg:
      raise ValueError("lighttpd cannot pass the argument %r: bin-path is"
                       " split at spaces and tabs" % (arg, ))
  _CheckInt("max_procs", max_procs, 1)
  options = {
    "socket": sockets[0],
    "bin-path": " ".join(command),
    "max-procs": max_procs,
    }
  # Tells ganeti.http that lighttpd spawned it (and so to serve FastCGI on
  # its standard input instead of starting a lighttpd of its own).
  options["bin-environment"] = dict(environment or {})
  options["bin-environment"][selection.ENV_SPAWNED] = "1"
  backend_options = _BackendOptions(settings)
  if settings.sendfile_dirs:
    options["bin-environment"][selection.ENV_SPAWNED_SENDFILE_DIRS] = (
      ",".join(backend_options["x-sendfile-docroot"]))
  options.update(backend_options)
  return _Render(settings, [options])

