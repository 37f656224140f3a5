"""A daemon's listening TCP socket, passed on to the daemon that replaces it.

A restart with Ganeti's tools is a stop, then a start.  Between the old
daemon closing its port and the new one binding it (the new one's start-up:
Python and Ganeti's imports, 0.3-1.2 s measured) the kernel refuses every
connection, as with stock Ganeti 3.0.  Instead, a stopping daemon that has
stopped accepting gives its listening socket to a keeper (L{ListeningSocket.
PassOn}): a small process forked from it (L{forked_child.Fork}, then once
more so that it is nobody's child; not in the daemon's pid file) that keeps
only that socket and a Unix socket of its own.  The keeper never accepts:
connections arriving meanwhile wait in the kernel's accept queue
(L{LISTEN_BACKLOG}).  The next daemon's L{ListeningSocket.Open} asks for the
socket before binding one.

The keeper offers the socket on a Unix socket in the handover directory
(L{HandoverDir}: C{<runtime directory>/handover}, which the Debian package
makes at boot; the daemon never makes it), named after the daemon, the
address family, address and port (L{_Name}).  Both sides reach it through a
descriptor of that directory, opened as L{trusted_dirs.OpenTrusted} does
(only root and the daemon's user can change it or a directory above it).
The keeper gives the socket (C{SCM_RIGHTS}) to the first process of its own
user (C{SO_PEERCRED}) that asks, after removing its name, and exits.  It
exits, closing the socket, after L{KEEP_FOR} seconds, or as soon as its name
no longer leads to its Unix socket: the package's removal empties the
handover directory, so that a stock Ganeti daemon started then can bind the
port.

The asking daemon takes the socket only from a peer of its own user, and
only a listening C{SOCK_STREAM} socket bound to exactly the family, address
and port it was asked for; anything else it closes (the keeper is gone
then: the port is free) and binds a socket of its own.
"""

import errno
import ipaddress
import logging
import os
import select
import socket
import struct
import time

from ganeti.http.system import forked_child
from ganeti.http.system import trusted_dirs

#: Connections the kernel queues for a listening socket before refusing
#: more: enough for a restart's gap of 1-2 s under load (both backends).
LISTEN_BACKLOG = 1024

#: Seconds a keeper holds a socket nobody asks for, then closes it.
KEEP_FOR = 10.0

#: The handover directory in the runtime directory.
HANDOVER_DIR_NAME = "handover"

#: Seconds a start keeps trying to bind while the port is in use (a keeper
#: letting go of it).
_BIND_RETRY_FOR = 2.0

#: How often a keeper looks at its name, and a start retries a bind (s).
_POLL_INTERVAL = 0.1

#: Longest wait for a keeper's answer (seconds).
_ASK_TIMEOUT = 2.0

_FAMILY_NAMES = {socket.AF_INET: "inet", socket.AF_INET6: "inet6"}

#: struct ucred: pid, uid, gid.
_UCRED = struct.Struct("3i")


def HandoverDir(user=None):
  """The handover directory of a daemon running as C{user} (a user name;
  default: this process's user)."""
  return os.path.join(trusted_dirs.DefaultRuntimeDir(user), HANDOVER_DIR_NAME)


def _Name(daemon_name, family, address, port):
  """The keeper's socket name for one listening socket."""
  return "%s@%s@%s@%d" % (daemon_name, _FAMILY_NAMES[family], address, port)


def _InDir(dir_fd, name):
  """A path to C{name} in the directory C{dir_fd} that never leaves it and
  stays short enough for a Unix socket address, however long the
  directory's own path is."""
  return "/proc/self/fd/%d/%s" % (dir_fd, name)


def _PeerCredentials(unix_socket):
  """C{(pid, uid)} of the process at the other end of C{unix_socket}."""
  (pid, uid, _) = _UCRED.unpack(unix_socket.getsockopt(
    socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size))
  return (pid, uid)


class ListeningSocket(object):
  """The listening TCP socket of one server, and its handover.

  @param handover: C{(daemon name, handover directory)} to take the socket
      over from a previous daemon and pass it on at the stop, or None to
      bind and close it as a plain server does
  """

  def __init__(self, family, address, port, handover=None):
    self.family = family
    self.address = address
    self.port = port
    if handover is None or port == 0:
      self._daemon_name = self._directory = None
    else:
      (self._daemon_name, self._directory) = handover

  def _Describe(self):
    return "%s port %d" % (self.address, self.port)

  def _OpenDir(self, purpose):
    """The handover directory's descriptor, or None if it is missing
    (logged) or not trusted (a warning)."""
    try:
      return trusted_dirs.OpenTrusted(self._directory)
    except (trusted_dirs.UntrustedPathError, OSError) as err:
      logging.log(logging.WARNING if os.path.lexists(self._directory)
                  else logging.INFO, "The listening socket on %s is not %s:"
                  " %s", self._Describe(), purpose, err)
      return None

  def Open(self):
    """The listening socket: the one a previous daemon's keeper holds, if
    any and exactly the one asked for, else a new one bound and listening.

    @raise OSError: the port cannot be bound
    """
    if self._directory is not None:
      dir_fd = self._OpenDir("taken over from a previous daemon")
      if dir_fd is not None:
        try:
          (taken, keeper) = _Receive(dir_fd, self._Name())
        finally:
          os.close(dir_fd)
        if taken is not None and self._IsTheOneAskedFor(taken):
          logging.info("Took over the listening socket on %s from the"
                       " previous daemon (kept by pid %d)", self._Describe(),
                       keeper)
          return taken
        if taken is not None:
          logging.warning("The socket kept by pid %d is not a listening"
                          " socket on %s; closed it", keeper,
                          self._Describe())
          taken.close()
    return self._Bind()

  def _Name(self):
    return _Name(self._daemon_name, self.family, self.address, self.port)

  def _IsTheOneAskedFor(self, sock):
    try:
      if (sock.family != self.family or sock.type != socket.SOCK_STREAM or
          not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)):
        return False
      (address, port) = sock.getsockname()[:2]
      return (port == self.port and ipaddress.ip_address(address) ==
              ipaddress.ip_address(self.address))
    except (OSError, ValueError):
      return False

  def _Bind(self):
    """A new socket, bound and listening; while the port is in use, other
    keepers of this daemon (left from an earlier address) are told to let
    go, and binding is retried for L{_BIND_RETRY_FOR} seconds."""
    deadline = time.monotonic() + _BIND_RETRY_FOR
    released = False
    while True:
      try:
        sock = _BindNew(self.family, self.address, self.port)
        break
      except OSError as err:
        if (err.errno != errno.EADDRINUSE or self._directory is None or
            time.monotonic() > deadline):
          raise
      if not released:
        self._ReleaseOtherKeepers()
        released = True
      time.sleep(_POLL_INTERVAL)
    if self._directory is not None:
      logging.info("Bound the listening socket on %s (no previous daemon"
                   " kept one)", self._Describe())
    return sock

  def _ReleaseOtherKeepers(self):
    """Take the sockets of this daemon's other keepers, and close them."""
    dir_fd = self._OpenDir("bound")
    if dir_fd is None:
      return
    try:
      prefix = self._daemon_name + "@"
      for name in os.listdir(dir_fd):
        if name.startswith(prefix) and name != self._Name():
          logging.info("Port %d in use: closing the listening socket kept"
                       " as %s", self.port, name)
          taken = _Receive(dir_fd, name)[0]
          if taken is not None:
            taken.close()
    finally:
      os.close(dir_fd)

  def PassOn(self, sock):
    """At the stop, once nothing accepts on C{sock} any more: have a keeper
    hold it for the next daemon (see the module's description).  The caller
    closes its own copy afterwards.  Without a handover (or its
    directory), nothing happens: the port closes with the caller's copy."""
    if self._directory is None or sock.fileno() < 0:
      return
    dir_fd = self._OpenDir("kept for the next daemon")
    if dir_fd is None:
      return
    offer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
      name = self._Name()
      try:
        os.unlink(name, dir_fd=dir_fd)
      except FileNotFoundError:
        pass
      umask = os.umask(0o077)
      try:
        offer.bind(_InDir(dir_fd, name))
      finally:
        os.umask(umask)
      offer.listen(4)
      bound = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
      keeper = _Keeper(sock, offer, dir_fd, name,
                       (bound.st_dev, bound.st_ino))
      middle = forked_child.Fork(keeper.Detach,
                                 keep=[sock, offer, _Descriptor(dir_fd)],
                                 name="Listening socket keeper")
      try:
        os.waitpid(middle, 0)
      except ChildProcessError:
        pass  # reaped by a reaper thread
      logging.info("The listening socket on %s is kept for the next daemon"
                   " (at most %s s) as %s", self._Describe(), KEEP_FOR,
                   os.path.join(self._directory, name))
    except OSError as err:
      logging.warning("Could not keep the listening socket on %s for the"
                      " next daemon: %s", self._Describe(), err)
    finally:
      offer.close()
      os.close(dir_fd)


def _Receive(dir_fd, name):
  """C{(socket, keeper's pid)} from the keeper called C{name} in
  C{dir_fd}; C{(None, None)} if there is none, or it is not of this
  process's user."""
  asker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  try:
    asker.settimeout(_ASK_TIMEOUT)
    try:
      asker.connect(_InDir(dir_fd, name))
    except (FileNotFoundError, ConnectionRefusedError):
      return (None, None)  # no keeper (or the name of a dead one)
    (pid, uid) = _PeerCredentials(asker)
    if uid != os.geteuid():
      logging.warning("Not taking a listening socket from pid %d of uid %d"
                      " (not this daemon's user)", pid, uid)
      return (None, None)
    (_, descriptors, _, _) = socket.recv_fds(asker, 1, 1)
  except OSError as err:
    logging.warning("Asking for the listening socket kept as %s failed: %s",
                    name, err)
    return (None, None)
  finally:
    asker.close()
  if not descriptors:
    return (None, None)
  taken = socket.socket(fileno=descriptors[0])
  taken.set_inheritable(False)  # as a socket this process makes
  taken.setblocking(True)  # whatever the keeper's daemon had set
  return (taken, pid)


class _Descriptor(object):
  """A bare descriptor, for L{forked_child.Fork}'s C{keep}."""

  def __init__(self, descriptor):
    self._descriptor = descriptor

  def fileno(self):  # pylint: disable=invalid-name
    return self._descriptor


class _Keeper(object):
  """The keeper's side (runs in the forked process).

  @param dir_fd: the handover directory
  @param name: the name of C{offer} in it
  @param identity: C{(st_dev, st_ino)} of that name
  """

  def __init__(self, listening, offer, dir_fd, name, identity):
    self._listening = listening
    self._offer = offer
    self._dir_fd = dir_fd
    self._name = name
    self._identity = identity

  def Detach(self, stopping):
    """Fork once more and leave the keeper to the grandchild, so that it is
    nobody's child (the daemon reaps the middle one at once)."""
    if os.fork() == 0:
      self._Keep(stopping)

  def _NameIsOurs(self):
    try:
      found = os.stat(self._name, dir_fd=self._dir_fd, follow_symlinks=False)
    except OSError:
      return False
    return (found.st_dev, found.st_ino) == self._identity

  def _Keep(self, stopping):
    deadline = time.monotonic() + KEEP_FOR
    # Not the daemon's name (ps -C ganeti-noded): "noded-keeper".
    with open("/proc/self/comm", "w") as comm:
      comm.write(self._name.split("@")[0][:8] + "-keeper")
    while not stopping.is_set() and self._NameIsOurs():
      left = deadline - time.monotonic()
      if left <= 0:
        logging.info("Nobody took the listening socket kept as %s within %s"
                     " s; closing it", self._name, KEEP_FOR)
        break
      if not select.select([self._offer], [], [],
                           min(left, _POLL_INTERVAL))[0]:
        continue
      (connection, _) = self._offer.accept()
      with connection:
        (pid, uid) = _PeerCredentials(connection)
        if uid != os.geteuid():
          logging.warning("Refused the listening socket kept as %s to pid %d"
                          " of uid %d", self._name, pid, uid)
          continue
        self._RemoveName()
        socket.send_fds(connection, [b"S"], [self._listening.fileno()])
        return
    self._RemoveName()

  def _RemoveName(self):
    if self._NameIsOurs():
      try:
        os.unlink(self._name, dir_fd=self._dir_fd)
      except OSError:
        pass


def _BindNew(family, address, port):
  """A new socket bound to C{address}:C{port} and listening (an IPv6
  socket keeps the system's default: on "::" IPv4 clients are served
  too)."""
  sock = socket.socket(family, socket.SOCK_STREAM)
  try:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.listen(LISTEN_BACKLOG)
  except OSError:
    sock.close()
    raise
  return sock
