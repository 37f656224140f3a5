"""The legacy backend's server: Python's threaded C{http.server} with stdlib
C{ssl}.

This is the threaded server of Ganeti's development branch (3.2), kept as
the backend a daemon falls back to.  It accepts connections, does the TLS
handshake and hands each connection to a
L{request_handler.GanetiRequestHandler} in a worker thread; for a server
made with Ganeti 3.0/3.1's signature, in a child process per connection
instead, as their server did (so that a stop does not wait for requests
in flight: L{connection_children}).  Every connection carries one request
(C{Connection: close}), as in Ganeti.
"""

import concurrent.futures
import http.server
import logging
import select
import socket
import ssl
import threading
import time

from ganeti.http import backends
from ganeti.http.backends import base
from ganeti.http.backends.legacy.request_handler import GanetiRequestHandler
from ganeti.http.core import tls
from ganeti.http.system import connection_children

#: How often the accepting thread, waiting for a free worker, checks whether
#: the server is stopping (seconds).
_WAIT_FOR_WORKER = 0.1

#: Longest time spent reading and dropping a request body the server did
#: not read, after answering, before closing (seconds).
_LINGER_TIMEOUT = 2.0


def _HandshakeWithin(tls_socket, wait_timeout, total_timeout):
  """Do the server side of a TLS handshake, waiting at most C{wait_timeout}
  seconds for each of the client's messages and C{total_timeout} in all (a
  blocking handshake only bounds each read: a client trickling its hello a
  byte at a time would hold a worker as long as it liked).

  @raise socket.timeout: the client took too long
  @raise ssl.SSLError: the handshake failed
  """
  deadline = time.monotonic() + total_timeout
  tls_socket.setblocking(False)
  waiting = select.poll()
  while True:
    try:
      tls_socket.do_handshake()
      break
    except ssl.SSLWantReadError:
      events = select.POLLIN
    except ssl.SSLWantWriteError:
      events = select.POLLOUT
    left = deadline - time.monotonic()
    waiting.register(tls_socket, events)
    if left <= 0 or not waiting.poll(1000 * min(left, wait_timeout)):
      raise socket.timeout("TLS handshake not complete in time")
  tls_socket.settimeout(wait_timeout)


def _DrainUnread(sock, timeout):
  """If data from the client is waiting, read and drop what comes for up
  to C{timeout} seconds (until the client closes its side)."""
  try:
    if not sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT):
      return  # the client closed its side
  except (OSError, ValueError):
    return  # nothing waiting (or a TLS socket still wrapped)
  deadline = time.monotonic() + timeout
  try:
    while True:
      left = deadline - time.monotonic()
      if left <= 0:
        return
      sock.settimeout(left)
      if not sock.recv(65536):
        return
  except OSError:
    return


class LegacyHttpServer(base.ServerBase, http.server.HTTPServer):
  """Threaded C{HTTPServer} serving a Ganeti handler.

  Binds and listens in the constructor (port 0 picks a free port, see
  C{server_address}); L{Start} serves in a background thread, at most
  C{max_clients} requests at once; L{Stop} lets those finish.

  @param options: L{ServerOptions<ganeti.http.core.server_options.
      ServerOptions>}
  @param choice: the L{selection.Choice<ganeti.http.backends.selection.
      Choice>} that selected this backend (for the status file)
  """
  backend = backends.LEGACY

  def __init__(self, options, choice=None):
    self._SetUpFromOptions(options, GanetiRequestHandler.MAX_REQUEST_BODY_SIZE,
                           choice)
    http.server.HTTPServer.__init__(
      self, (options.local_address, options.port), GanetiRequestHandler,
      bind_and_activate=False)
    # Bound and listening, or taken over from the previous daemon.
    self.socket.close()
    self.socket = self.listening.Open()
    self.server_address = self.socket.getsockname()
    if options.ssl_params is None:
      self._ssl_context = None
    else:
      self._ssl_context = self._create_ssl_context(options.ssl_params,
                                                   options.ssl_verify_peer)
    if self.per_connection_processes:
      self._children = connection_children.ConnectionChildren(
        options.max_clients)
      self._workers = None
    else:
      self._children = None
      self._workers = concurrent.futures.ThreadPoolExecutor(
        max_workers=options.max_clients, thread_name_prefix="HTTPWorker")
    # A connection is accepted only when a worker is free for it.
    self._free_workers = threading.BoundedSemaphore(options.max_clients)
    self._stopping = threading.Event()
    self._serve_thread = None

  @staticmethod
  def _create_ssl_context(ssl_params, ssl_verify_peer):
    """Return the server's C{ssl.SSLContext} (see L{tls}; Ganeti's own
    tests call this method)."""
    return tls.ServerContext(ssl_params, ssl_verify_peer)

  def Start(self):
    """Serve in a background thread; returns at once.  A server made with
    Ganeti 3.2's signature also reaps the daemon's forgotten children
    (L{base.ServerBase._HoldReaper}), as 3.2's does."""
    logging.info("Serving HTTP%s on %s port %s with the %s backend",
                 "S" if self._ssl_context else "", self.server_address[0],
                 self.server_address[1], self.backend)
    self._serve_thread = threading.Thread(target=self.serve_forever,
                                          kwargs={"poll_interval": 0.05},
                                          name="HTTPServer", daemon=True)
    self._serve_thread.start()
    self._HoldReaper()
    self._WakeMainLoopOnSignals()
    self._PublishStatus(self._ssl_context is not None)

  def Stop(self):
    """Stop accepting, pass the socket on to the next daemon (L{base.
    ServerBase._SetUpFromOptions}, C{listening}) or close it, let requests
    in progress finish: in worker threads, Stop waits for them; in
    per-connection processes, they finish on their own."""
    self._WithdrawStatus()
    self._stopping.set()
    if self._serve_thread is not None:
      self.shutdown()
      self._serve_thread.join()
      self._serve_thread = None
      self.listening.PassOn(self.socket)
    if self._workers is not None:
      self._workers.shutdown(wait=True)
    self.server_close()
    if self._children is not None:
      self._children.Release()
    self._ReleaseReaper()

  def get_request(self):
    """Accept a connection once a worker is free to serve it.

    Until then connections wait in the kernel's listen queue (bounded by
    L{LISTEN_BACKLOG<ganeti.http.system.listening_socket_handover.
    LISTEN_BACKLOG>}), not accepted, each holding a file descriptor, in an
    unbounded queue of this process.
    """
    while not self._free_workers.acquire(timeout=_WAIT_FOR_WORKER):
      if self._stopping.is_set():
        raise OSError("server stopping")  # socketserver accepts nothing
    try:
      return self.socket.accept()
    except BaseException:
      self._free_workers.release()
      raise

  def process_request(self, request, client_address):
    if self._workers is not None:
      self._workers.submit(self._ServeConnection, request, client_address)
      return
    try:
      self._children.Serve(
        request, lambda: self._ServeConnection(request, client_address))
    finally:
      # The child has its own copy of the connection.
      self.close_request(request)
      self._free_workers.release()

  def service_actions(self):
    """Reap the per-connection processes that exited (called by
    C{serve_forever} between polls)."""
    if self._children is not None:
      self._children.Collect()

  def _ServeConnection(self, request, client_address):
    # Each response (and each streamed chunk) is flushed whole, so Nagle's
    # algorithm only delays: TLS's close_notify after a response waited
    # for the client's delayed ACK, 40 ms per request.
    request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
      if self._ssl_context is not None:
        request = self._ssl_context.wrap_socket(
          request, server_side=True, do_handshake_on_connect=False)
        try:
          _HandshakeWithin(request, GanetiRequestHandler.timeout,
                           GanetiRequestHandler.request_head_timeout)
        except (OSError, ssl.SSLError) as err:
          logging.info("TLS handshake with %s failed: %s", client_address[0],
                       err)
          return
      self.finish_request(request, client_address)
    except (ConnectionError, ssl.SSLError) as err:
      # Handler errors were answered already: this is the client leaving,
      # or breaking its TLS stream (a bad record, an alert) mid-request.
      logging.info("Client %s went away: %s", client_address[0], err)
    except Exception:  # pylint: disable=broad-except
      self.handle_error(request, client_address)
    finally:
      self.shutdown_request(request)
      self._free_workers.release()

  def shutdown_request(self, request):
    """Half-close, drop what the client may still be sending, then close.

    A request body the server did not read (an early 413, say) would make
    the kernel reset the connection at close, and a client that reads the
    answer only after sending its whole body would lose it.
    """
    try:
      request.shutdown(socket.SHUT_WR)
    except OSError:
      pass
    _DrainUnread(request, _LINGER_TIMEOUT)
    self.close_request(request)

  def handle_error(self, request, client_address):
    logging.exception("Error while serving %s", client_address[0])
