"""Keeps the HTTPS client's connections open from one request to the next.

libcurl keeps a connection open after a transfer in the connection cache
of the multi handle that ran it, and reuses it for a later transfer on that
multi handle to the same host, port and TLS settings.  A multi handle must
be used by one thread at a time, and libcurl's shared connection cache
(C{LOCK_DATA_CONNECT}) is not thread-safe, so connections are kept by
keeping multi handles: L{ProcessRequests<ganeti.http.client.ProcessRequests>}
checks one out of the process's L{ConnectionPool}, runs its requests on it
and checks it back in.  Nothing else touches a multi handle meanwhile, so
no connection ever carries two transfers at once.

What this module decides:

  - B{Who may reuse what}: multi handles and TLS sessions are kept per
    L{TlsIdentity}, every option the caller's C{curl_config_fn} set plus
    the identity (inode, size, mtime) of each certificate, key and CA file
    it named.  A renewed certificate at the same path is another identity,
    so it gets new connections and new sessions (libcurl compares paths).
  - B{Bounds}: at most L{MAX_IDLE_MULTIS} idle multi handles in the process
    (least recently used closed first), each keeping at most
    L{MAX_CONNECTIONS_PER_MULTI} idle connections.  Ganeti sends one
    request per node in a call, so a node has at most L{MAX_IDLE_MULTIS}
    idle connections from one process.
  - B{Age}: a connection idle for L{MAX_IDLE_AGE} seconds is not reused,
    which is well below the keep-alive idle time of the lighttpd
    configuration this package renders, so the server does not close a
    connection while a request starts on it.
  - B{TLS sessions}: new connections of one identity resume TLS sessions
    through a C{CurlShare} (C{LOCK_DATA_SSL_SESSION}; pycurl supplies the
    lock callbacks).
  - B{No second execution}: when a reused connection dies before any
    response byte, libcurl sends the request again on a new connection,
    for any method.  The server may have executed the first copy, so a
    request other than GET and HEAD (L{MayResend}) gets a body libcurl
    cannot rewind once part of it went out (the request then fails with
    C{client_bodies.NOT_SENT_AGAIN}), or a new connection if it has no
    body.  libcurl then sends again only a request none of whose body
    went out: without its body the server cannot have executed it.  Such
    a request to a server that keeps connections sends its body only
    after "100 Continue" (L{client_expect}), so that a connection the
    server closes before reading the request costs nothing of it.
  - B{Fork}: a child process starts with an empty pool and makes the file
    descriptors of its parent's connections point at C{/dev/null}, so
    nothing in the child (not even libcurl closing them at exit) reads
    from or writes to its parent's connections.
  - B{The switch}: L{KeepAliveEnabled}.
"""

import collections
import os
import stat
import threading
import time

import pycurl

from ganeti.http.backends import selection

#: Environment variable: "0", "no", "false" or "off" turns reuse off
ENV_KEEPALIVE = selection.ENV_CLIENT_KEEPALIVE
#: Section and key of the backend flag's INI file with the same meaning
CONFIG_SECTION = "client"
CONFIG_KEY = "keepalive"

#: Seconds a connection may have been idle and still be reused; below
#: lighttpd.config.DEFAULT_KEEP_ALIVE_IDLE, with room to spare
MAX_IDLE_AGE = 20
#: Idle multi handles the process keeps, over all TLS identities
MAX_IDLE_MULTIS = 8
#: Idle connections one multi handle keeps (libcurl's M_MAXCONNECTS)
MAX_CONNECTIONS_PER_MULTI = 256
#: TLS identities whose sessions are remembered
MAX_SESSION_CACHES = 4
#: Methods libcurl may send again after a reused connection died
_RESENDABLE_METHODS = frozenset(["GET", "HEAD"])
#: Options that name a file whose contents matter
_FILE_OPTIONS = frozenset(getattr(pycurl, name) for name in
                          ("CAINFO", "CAPATH", "SSLCERT", "SSLKEY",
                           "CRLFILE", "ISSUERCERT")
                          if hasattr(pycurl, name))

_enabled = None


def KeepAliveEnabled():
  """Tell whether connections are kept, decided once per process.

  C{GANETI_HTTP_CLIENT_KEEPALIVE} (from the environment or Ganeti's
  defaults file, see L{selection.Variable}) wins, then the key
  C{keepalive} in section C{[client]} of the backend flag's INI file; the
  default is on.

  @raise ValueError: the value is not one of 0/1, no/yes, false/true, off/on
      (L{selection.Switch})
  """
  global _enabled  # pylint: disable=global-statement
  if _enabled is None:
    _enabled = _ReadSwitch()
  return _enabled


def _ReadSwitch(environ=os.environ):
  return selection.Switch(ENV_KEEPALIVE, CONFIG_SECTION, CONFIG_KEY, environ)


class OptionRecorder(object):
  """Stands in for a curl handle while C{curl_config_fn} configures it:
  passes every call on and remembers the options set."""

  def __init__(self, curl):
    self._curl = curl
    self.options = {}

  def setopt(self, option, value):
    """Set and remember an option."""
    self._curl.setopt(option, value)
    self.options[option] = value

  def unsetopt(self, option):
    """Unset an option (remembered as None)."""
    self._curl.unsetopt(option)
    self.options[option] = None

  def __getattr__(self, name):
    return getattr(self._curl, name)


def _FileIdentity(path):
  try:
    info = os.stat(path)
  except (OSError, TypeError, ValueError):
    return None
  return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)


def TlsIdentity(options):
  """Return a hashable identity of the options a C{curl_config_fn} set, or
  None when some value cannot be compared (a callback, say): such requests
  get no reuse."""
  parts = []
  for option in sorted(options):
    value = options[option]
    if option in _FILE_OPTIONS:
      parts.append((option, value, _FileIdentity(value)))
    else:
      parts.append((option, value))
  identity = tuple(parts)
  try:
    hash(identity)
  except TypeError:
    return None
  return identity


def MayResend(method):
  """Tell whether libcurl may send a request of C{method} a second time."""
  return method.upper() in _RESENDABLE_METHODS


class Lease(object):
  """A multi handle checked out of the pool, with its identity's TLS
  session cache."""

  def __init__(self, identity, multi, share, note_socket):
    self.identity = identity
    self.multi = multi
    self._share = share
    self._note_socket = note_socket

  def PrepareTransfer(self, curl):
    """Let C{curl} reuse connections and TLS sessions."""
    curl.setopt(pycurl.SHARE, self._share)
    curl.setopt(pycurl.SSL_SESSIONID_CACHE, True)
    curl.setopt(pycurl.MAXAGE_CONN, MAX_IDLE_AGE)
    curl.setopt(pycurl.SOCKOPTFUNCTION, self._note_socket)


class ConnectionPool(object):
  """The idle multi handles and TLS session caches of one process."""

  def __init__(self, clock=time.monotonic):
    self._clock = clock
    self._lock = threading.Lock()
    # (identity, multi, last use), least recently used first
    self._idle = collections.deque()
    self._shares = collections.OrderedDict()
    #: The sockets libcurl made: fd -> inode (see L{_AfterForkInChild})
    self.sockets = {}

  def Checkout(self, identity, new_multi):
    """Return a L{Lease} on an idle multi handle of C{identity}, or on a
    new one made by C{new_multi()}."""
    with self._lock:
      stale = self._TakeStale()
      multi = None
      for entry in reversed(self._idle):
        if entry[0] == identity:
          self._idle.remove(entry)
          multi = entry[1]
          break
      share = self._shares.pop(identity, None)
      if share is None:
        share = pycurl.CurlShare()
        share.setopt(pycurl.SH_SHARE, pycurl.LOCK_DATA_SSL_SESSION)
      self._shares[identity] = share
      while len(self._shares) > MAX_SESSION_CACHES:
        self._shares.popitem(last=False)
    _Close(stale)
    if multi is None:
      multi = new_multi()
      multi.setopt(pycurl.M_MAXCONNECTS, MAX_CONNECTIONS_PER_MULTI)
    return Lease(identity, multi, share, self._NoteSocket)

  def _NoteSocket(self, fd, _purpose):
    """curl's SOCKOPTFUNCTION: remember a new connection's socket."""
    self.sockets[fd] = os.fstat(fd).st_ino
    return pycurl.SOCKOPT_OK

  def Checkin(self, lease):
    """Keep the lease's multi handle for later calls."""
    with self._lock:
      self._idle.append((lease.identity, lease.multi, self._clock()))
      excess = []
      while len(self._idle) > MAX_IDLE_MULTIS:
        excess.append(self._idle.popleft()[1])
      excess.extend(self._TakeStale())
    _Close(excess)

  def IdleCount(self):
    """The number of idle multi handles kept."""
    with self._lock:
      return len(self._idle)

  def _TakeStale(self):
    """Remove and return the multi handles idle for too long (their
    connections are all too old to reuse)."""
    limit = self._clock() - MAX_IDLE_AGE
    stale = []
    while self._idle and self._idle[0][2] < limit:
      stale.append(self._idle.popleft()[1])
    return stale

  def Clear(self):
    """Close every idle multi handle (their connections close too)."""
    with self._lock:
      idle = [entry[1] for entry in self._idle]
      self._idle.clear()
      self._shares.clear()
    _Close(idle)


def _Close(multis):
  for multi in multis:
    multi.close()


_pool = ConnectionPool()
# A forked child's inherited pools, never cleaned up there (see below)
_inherited = []


def Pool():
  """The process's L{ConnectionPool}."""
  return _pool


def _StillConnection(fd, inode):
  """Tell whether C{fd} is still the socket with C{inode} (libcurl may
  have closed it, and the number may now be another file's)."""
  try:
    info = os.fstat(fd)
  except OSError:
    return False
  return stat.S_ISSOCK(info.st_mode) and info.st_ino == inode


def _AfterForkInChild():
  """Give the child a pool of its own; the parent's connections stay the
  parent's.

  Closing an inherited connection would read from and write to the
  parent's TLS connection (libcurl reads a pending close alert and sends
  its own), so the parent's pool is kept unreferenced by anyone but
  L{_inherited}, and each of its sockets (checked to still be the
  connection it was) is replaced by C{/dev/null}: whatever libcurl does
  with it later happens there.
  """
  global _pool  # pylint: disable=global-statement
  (parent, _pool) = (_pool, ConnectionPool())
  _inherited.append(parent)
  devnull = os.open(os.devnull, os.O_RDWR)
  try:
    for (fd, inode) in list(parent.sockets.items()):
      if _StillConnection(fd, inode):
        os.dup2(devnull, fd)
  finally:
    os.close(devnull)


os.register_at_fork(after_in_child=_AfterForkInChild)
