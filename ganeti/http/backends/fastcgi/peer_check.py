"""Which process may connect to the fastcgi backend's socket: only the
lighttpd that serves this daemon (checked by the peer's credentials)."""

import logging
import os
import socket
import struct
import threading
import time

from ganeti.http.system import process_identity

_PEER_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid


class PeerCheck(object):
  """Lets FastCGI connections in from one process only: the lighttpd that
  serves this daemon.

  The socket's owner and mode keep other users out, but lighttpd's account
  is often shared (C{www-data}: other web applications on the host), and
  whoever connects decides the CGI variables, among them the ones saying
  that lighttpd verified a client certificate.

  A pid alone does not name a process for long: a process of that account
  could kill lighttpd and be given its pid.  So the check holds on to the
  very process it accepted (L{process_identity.Process}) and asks
  C{find_lighttpd} again once that one has exited.

  Refusals are logged, at most once per C{log_interval} seconds (with the
  number left unlogged), so that such a process cannot flood the log.

  @param find_lighttpd: returns the current lighttpd as a
      L{process_identity.Process}, or None; see L{LighttpdFromPidFile} and
      L{SpawningLighttpd}
  @param clock: returns the time in seconds, for the log interval
  """

  def __init__(self, find_lighttpd, log_interval=60.0, clock=time.monotonic):
    self._find_lighttpd = find_lighttpd
    self._known = None
    self._log_interval = log_interval
    self._clock = clock
    self._log_lock = threading.Lock()
    self._next_log = 0.0
    self._unlogged = 0

  def Allows(self, connection):
    """Whether C{connection} (an accepted Unix socket) comes from lighttpd;
    logs a refusal."""
    (pid, uid, _) = _PEER_CREDENTIALS.unpack(connection.getsockopt(
      socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER_CREDENTIALS.size))
    known = self._known
    if known is None or pid != known.pid or not known.Alive():
      known = self._known = self._find_lighttpd()
      if known is None or pid != known.pid or not known.Alive():
        self._LogRefusal(pid, uid, known)
        return False
    return True

  def _LogRefusal(self, pid, uid, lighttpd):
    with self._log_lock:
      now = self._clock()
      if now < self._next_log:
        self._unlogged += 1
        return
      (unlogged, self._unlogged) = (self._unlogged, 0)
      self._next_log = now + self._log_interval
    logging.warning("Refusing a FastCGI connection from pid %d (uid %d),"
                    " which is not this daemon's lighttpd (%s)%s", pid, uid,
                    "pid %d" % lighttpd.pid if lighttpd else "none running",
                    "; %d more refused unlogged since the last message" %
                    unlogged if unlogged else "")


def LighttpdFromPidFile(path, parent_pid):
  """C{find_lighttpd} for L{PeerCheck} when this daemon runs lighttpd: the
  process whose pid is in lighttpd's pid file at C{path}, if it is a child
  of C{parent_pid} (the daemon; no other process of lighttpd's account can
  be)."""
  def _Find():
    try:
      with open(path) as handle:
        process = process_identity.Process(int(handle.read().strip()))
    except (OSError, ValueError):
      return None
    if process.parent != parent_pid or not process.Alive():
      return None
    return process
  return _Find


def ListeningProcess(listen_socket):
  """The pid of the process that made the Unix socket C{listen_socket}
  listen (C{SO_PEERCRED} of a listening socket): for a socket lighttpd
  spawned this process with, that lighttpd, even if it has exited since."""
  return _PEER_CREDENTIALS.unpack(listen_socket.getsockopt(
    socket.SOL_SOCKET, socket.SO_PEERCRED, _PEER_CREDENTIALS.size))[0]


def SpawningLighttpd(pid):
  """C{find_lighttpd} for L{PeerCheck} when a system lighttpd (C{pid}, see
  L{ListeningProcess}) spawned this process: that parent, and nothing after
  it exits.

  @raise LookupError: C{pid} is no longer this process's parent
  """
  try:
    process = process_identity.Process(pid)
  except OSError:
    process = None
  # Checked with the pidfd open: a parent's pid cannot be reused while it
  # is this process's parent.
  if process is None or os.getppid() != pid:
    raise LookupError("lighttpd (pid %d), which spawned this process, is"
                      " gone" % pid)
  return lambda: process
