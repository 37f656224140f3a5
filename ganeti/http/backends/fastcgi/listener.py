"""The accept loop of the fastcgi backend, and its listening sockets.

flup's own C{run()} installs signal handlers, so it only works in the main
thread, and its thread pool is unbounded; L{FastCgiListener} runs in any
thread with a fixed number of threads, each serving the connections it
accepts through a L{flup_gateway.FlupGateway}.
"""

import logging
import os
import select
import socket
import threading

#: How often blocking loops look at their stop flag, in seconds.
POLL_INTERVAL = 0.2


class FastCgiListener(object):
  """Serves FastCGI connections in a fixed number of threads.

  Each thread accepts a connection and serves it itself, so a request is
  never handed from one thread to another (measured: the hand-off of an
  accept thread to a pool cost about as much as flup's whole request
  handling).  Only one thread of a process waits in accept() at a time, so
  a new connection wakes one thread, not all of them.

  @param gateway: a L{flup_gateway.FlupGateway}
  @param listen_socket: a listening Unix socket
  @param max_threads: connections served at once; more wait in the backlog
  @param peer_check: a L{peer_check.PeerCheck} every connection must pass,
      or None
  """

  def __init__(self, gateway, listen_socket, max_threads, peer_check=None):
    self._gateway = gateway
    self._peer_check = peer_check
    self._socket = listen_socket
    # Several processes may wait on this socket: when another one wins the
    # race for a connection, accept() here must not block (that would also
    # keep this process from noticing a stop request).
    self._socket.setblocking(False)
    self._max_threads = max_threads
    self._accept_lock = threading.Lock()
    self._stopping = threading.Event()

  def Serve(self, should_continue=lambda: True):
    """Serve until L{Stop} is called (or C{should_continue()} is false),
    then wait for the requests in progress."""
    threads = [threading.Thread(target=self._AcceptAndServe,
                                args=(should_continue, ),
                                name="FastCGIWorker-%d" % number, daemon=True)
               for number in range(1, self._max_threads)]
    for thread in threads:
      thread.start()
    self._AcceptAndServe(should_continue)
    for thread in threads:
      thread.join()

  def _AcceptAndServe(self, should_continue):
    while not self._stopping.is_set() and should_continue():
      connection = self._Accept()
      if connection is None:
        continue
      try:
        if self._peer_check is None or self._peer_check.Allows(connection):
          self._gateway.ServeConnection(connection)
      except BaseException:  # pylint: disable=broad-except
        # Even SystemExit from a handler: the thread must keep serving (as
        # the legacy backend's threads do).
        logging.exception("Error on a FastCGI connection")
      finally:
        connection.close()

  def _Accept(self):
    """A new connection, or None after a while without one."""
    if not self._accept_lock.acquire(timeout=POLL_INTERVAL):
      return None
    try:
      # Under load a connection is already waiting: no need to select().
      connection = self._TryAccept()
      if connection is None:
        select.select([self._socket], [], [], POLL_INTERVAL)
        connection = self._TryAccept()
    finally:
      self._accept_lock.release()
    return connection

  def _TryAccept(self):
    """A waiting connection, as a blocking socket, or None."""
    try:
      (connection, _) = self._socket.accept()
    except (BlockingIOError, InterruptedError):
      return None
    if connection.gettimeout() is not None:  # socket.setdefaulttimeout()
      connection.setblocking(True)
    return connection

  def Stop(self):
    """Make L{Serve} return once the requests in progress are done."""
    self._stopping.set()


def InheritedFastCgiSocket():
  """The listening socket a web server passes as standard input (fd 0).

  Standard input becomes C{/dev/null}: processes the daemon starts must
  not hold the socket.

  @raise OSError: fd 0 is not a listening socket
  """
  sock = socket.socket(fileno=os.dup(0))
  if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
    sock.close()
    raise OSError("Standard input is not a listening socket; was this"
                  " process really spawned by lighttpd (bin-path)?")
  null = os.open(os.devnull, os.O_RDONLY)
  os.dup2(null, 0)
  os.close(null)
  return sock


def BindUnixSocket(path, owner_uid=None, owner_gid=None, mode=0o600):
  """Create a listening Unix socket at C{path} with explicit owner and mode.

  The socket is created under a 0o077 umask, so there is no moment in which
  another user could connect, then given C{mode} and, when set, the owner
  the frontend runs as.
  """
  if os.path.exists(path):
    os.unlink(path)
  sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  old_umask = os.umask(0o077)
  try:
    sock.bind(path)
  finally:
    os.umask(old_umask)
  if owner_uid is not None or owner_gid is not None:
    os.chown(path, -1 if owner_uid is None else owner_uid,
             -1 if owner_gid is None else owner_gid)
  os.chmod(path, mode)
  sock.listen(socket.SOMAXCONN)
  return sock
