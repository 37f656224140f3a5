"""The FastCGI side of the fastcgi backend: flup on a Unix socket.

flup decodes FastCGI records and calls a WSGI application; this module
supplies what flup 1.0.3 lacks for a daemon:

- an accept loop that can run in any thread (flup's own C{run()} installs
  signal handlers, so it only works in the main thread) with a *bounded*
  number of worker threads (flup's thread pool is unbounded);
- a multi-process mode: several forked copies of the daemon, each running
  that accept loop on the same listening socket, for throughput and for
  handlers that are not thread-safe (flup's own prefork server ignores
  SIGTERM until the next request arrives under Python 3, so it is not used);
- fewer system calls and copies: records received many at a time and
  sent one per call (flup: a C{select()} and two or three C{recv()} per
  record received, three C{send()} per record sent), records of up to
  64 KiB (flup: 8 KiB), request bodies kept as received until read;
- a plain 500 instead of flup's HTML page, never a traceback to a client.

lighttpd opens one connection per request and never multiplexes, so flup's
multiplexing stays off.
"""

import collections
import ctypes
import fcntl
import logging
import os
import select
import signal
import socket
import struct
import termios
import threading
import time

from flup.server import fcgi_base

from ganeti.http.system import child_reaper
from ganeti.http.backends.fastcgi import records as fastcgi_records
from ganeti.http.system import process_identity
from ganeti.http.core import response_body
from ganeti.http.backends.fastcgi import wsgi_application

#: How often blocking loops look at their stop flag, in seconds.
_POLL_INTERVAL = 0.2

#: glibc's mallopt() parameter number for the arena limit, and the limit
#: set in forked worker processes (see _LimitMallocArenas).
_M_ARENA_MAX = -8
WORKER_MALLOC_ARENAS = 2

#: Send buffer of a FastCGI connection that streams a response.
_STREAMING_SEND_BUFFER = 128 * 1024

#: A worker process that exits within this many seconds of its start died
#: young: the next restart waits, first this long, then twice as long each
#: time, up to the last delay (seconds).
_SHORT_LIFE = 10.0
_FIRST_RESTART_DELAY = 0.5
_LAST_RESTART_DELAY = 30.0

#: Bytes asked for per recv() on a FastCGI connection.
_RECEIVE_SIZE = 64 * 1024

#: Largest FCGI_PARAMS stream accepted (the CGI variables of one request:
#: lighttpd sends a few KiB, the request headers and a client certificate).
MAX_PARAMS_SIZE = 1 << 20

#: Longest wait for lighttpd to read a failed response's data (seconds).
_ABORT_DRAIN_TIMEOUT = 5.0

#: Time lighttpd gets to act on that data before the connection drops.
_ABORT_GRACE = 0.05


class _InputStream(object):
  """FCGI_STDIN (or FCGI_DATA) as C{wsgi.input}, which only
  L{wsgi_application.WsgiApplication} reads, through C{read()}.

  The received records stay as they are until read (flup's stream joined
  and re-sliced everything it held on every read: several copies of an
  uploaded body).
  """

  def __init__(self, conn):
    self._conn = conn
    self._chunks = collections.deque()
    self._available = 0
    self._ended = False

  def add_data(self, data):  # pylint: disable=invalid-name
    """Called by the connection with each record's data; empty at the end."""
    if data:
      self._chunks.append(data)
      self._available += len(data)
    else:
      self._ended = True

  def read(self, size=-1):
    """Return C{size} bytes (all if negative), fewer only at the end of the
    stream, waiting for records as needed.

    @raise EOFError: lighttpd closed the connection before the end
    """
    while not self._ended and (size < 0 or self._available < size):
      self._conn.process_input()
    if size < 0 or size >= self._available:
      size = self._available
    parts = []
    missing = size
    while missing:
      chunk = self._chunks.popleft()
      if len(chunk) > missing:
        self._chunks.appendleft(chunk[missing:])
        chunk = chunk[:missing]
      parts.append(chunk)
      missing -= len(chunk)
    self._available -= size
    return parts[0] if len(parts) == 1 else b"".join(parts)


class _Connection(fcgi_base.Connection):
  """flup's FastCGI connection, reading and writing with fewer system calls.

  flup waits in C{select()} and makes two or three C{recv()} calls for
  each record; here one C{recv()} takes in whatever lighttpd sent (for a
  small request: all of it) and L{fastcgi_records.RecordDecoder} splits it.
  Each record goes out with one call.  The CGI variables are decoded in one
  pass once all have arrived (flup decoded pair by pair, record by record,
  and could not decode a pair split between two records).
  """

  _inputStreamClass = _InputStream

  def __init__(self, sock, addr, server, timeout):
    fcgi_base.Connection.__init__(self, sock, addr, server, timeout)
    self._decoder = fastcgi_records.RecordDecoder()
    self._streaming = False

  @property
  def socket(self):
    """The connection's socket."""
    return self._sock

  def StartStreaming(self):
    """Called before a response goes out in more than one piece: shrink
    the socket's send buffer (once), so that lighttpd never finds much
    more to read than it can pass on, which it would spool to temporary
    files.  Measured on 1 GiB streams (docs/performance.md): with
    lighttpd's 8 KiB read buffers 32 KiB did best; with the 64 KiB ones
    our configuration sets, 128 KiB (1.2-1.9 GB/s, against 1.3-1.6 with
    64 KiB and 1.3-1.6 with the system's default of 208 KiB).  A response
    sent in one piece does without the system call."""
    if not self._streaming:
      self._streaming = True
      self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF,
                            _STREAMING_SEND_BUFFER)

  def process_input(self):
    """Handle the next record, receiving more bytes only when needed.

    @raise EOFError: lighttpd closed the connection
    @raise fastcgi_records.ProtocolError: the peer does not speak FastCGI
    """
    record = self._decoder.NextRecord()
    while record is None:
      data = self._sock.recv(max(_RECEIVE_SIZE, self._decoder.MissingBytes()))
      if not data:
        raise EOFError()
      self._decoder.Feed(data)
      record = self._decoder.NextRecord()
    method = self._RECORD_METHODS.get(record.type)
    if method is not None:
      getattr(self, method)(record)
    elif record.requestId == fcgi_base.FCGI_NULL_REQUEST_ID:
      self._do_unknown_type(record)

  _RECORD_METHODS = {
    fcgi_base.FCGI_GET_VALUES: "_do_get_values",
    fcgi_base.FCGI_BEGIN_REQUEST: "_do_begin_request",
    fcgi_base.FCGI_ABORT_REQUEST: "_do_abort_request",
    fcgi_base.FCGI_PARAMS: "_do_params",
    fcgi_base.FCGI_STDIN: "_do_stdin",
    fcgi_base.FCGI_DATA: "_do_data",
  }

  def _do_params(self, inrec):  # pylint: disable=invalid-name
    req = self._requests.get(inrec.requestId)
    if req is None:
      return
    if inrec.contentData:
      req.encoded_params.append(inrec.contentData)
      req.encoded_params_size += len(inrec.contentData)
      if req.encoded_params_size > MAX_PARAMS_SIZE:
        raise fastcgi_records.ProtocolError(
          "FCGI_PARAMS stream over %d bytes" % MAX_PARAMS_SIZE)
    else:
      req.params = fastcgi_records.DecodeParams(b"".join(req.encoded_params))
      self._start_request(req)

  def _do_get_values(self, inrec):  # pylint: disable=invalid-name
    """Answer the values asked for that we know (flup compared the names,
    bytes, with its str keys, so it never answered any)."""
    capability = self.server.capability
    answer = b"".join(
      fastcgi_records.EncodePair(name, str(capability[name]))
      for name in fastcgi_records.DecodeParams(inrec.contentData)
      if name in capability)
    _SendBuffers(self._sock, fastcgi_records.RecordBuffers(
      fcgi_base.FCGI_GET_VALUES_RESULT, fcgi_base.FCGI_NULL_REQUEST_ID,
      answer))

  def _cleanupSocket(self):  # pylint: disable=invalid-name
    """Half-close, wait for lighttpd to close its side, then close (closing
    with unread data would reset the connection)."""
    if self._sock.fileno() == -1:
      return  # already done (flup's run() calls this once more)
    try:
      self._sock.shutdown(socket.SHUT_WR)
      while self._sock.recv(4096):
        pass
    except OSError:
      pass
    self._sock.close()

  def writeRecord(self, rec):  # pylint: disable=invalid-name
    _SendBuffers(self._sock, fastcgi_records.RecordBuffers(
      rec.type, rec.requestId, rec.contentData))

  @staticmethod
  def EndRequestBuffers(req, app_status=0,
                        protocol_status=fcgi_base.FCGI_REQUEST_COMPLETE):
    """The FCGI_END_REQUEST record of C{req}, to send; marks it as sent."""
    req.end_sent = True
    return fastcgi_records.RecordBuffers(
      fcgi_base.FCGI_END_REQUEST, req.requestId,
      struct.pack(fcgi_base.FCGI_EndRequestBody, app_status,
                  protocol_status))

  def end_request(self, req, appStatus=0,  # pylint: disable=invalid-name
                  protocolStatus=fcgi_base.FCGI_REQUEST_COMPLETE,
                  remove=True):
    """End C{req} (unless its end went out with its last data), then close
    the connection, as lighttpd never asks to keep it."""
    if not req.end_sent:
      _SendBuffers(self._sock,
                   self.EndRequestBuffers(req, appStatus, protocolStatus))
    if remove:
      del self._requests[req.requestId]
    if not req.flags & fcgi_base.FCGI_KEEP_CONN and not self._requests:
      self._cleanupSocket()
      self._keepGoing = False

  def Abort(self):
    """Drop the connection without ending the request, so that lighttpd
    closes the client's connection without completing the response.

    lighttpd only does so once it has started sending the response: if it
    reads the data and the end of the connection in one go, it sends what
    it got as a complete body with a Content-Length.  So first wait until
    lighttpd has read everything sent (the socket's output queue is
    empty), then a moment more for it to pass that on.
    """
    self._keepGoing = False
    deadline = time.monotonic() + _ABORT_DRAIN_TIMEOUT
    while _UnreadBytes(self._sock) and time.monotonic() < deadline:
      time.sleep(0.005)
    time.sleep(_ABORT_GRACE)
    try:
      self._sock.shutdown(socket.SHUT_RDWR)
    except OSError:
      pass


def _UnreadBytes(sock):
  """Bytes written to C{sock} that the peer has not read yet (Linux)."""
  try:
    raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
  except OSError:
    return 0
  return struct.unpack("i", raw)[0]


class _OutputStream(fcgi_base.OutputStream):
  """flup's FCGI_STDOUT stream, buffered until each flush, with two changes:

  - a large write goes out as many records in one system call, without
    copying the data (flup sliced the remaining bytes for every record:
    about eight copies of a 1 MiB chunk);
  - the flush that completes a body of known length (Content-Length) also
    ends the stream and the request, in the same call: lighttpd closes the
    connection as soon as it has the whole body, so what flup would send
    next (the end of the stream, FCGI_END_REQUEST) would hit a closed
    socket.
  """

  def __init__(self, conn, req):
    fcgi_base.OutputStream.__init__(self, conn, req, fcgi_base.FCGI_STDOUT,
                                    buffered=True)
    # Body bytes the Content-Length still announces; None: no length.
    self._body_left = None

  def write(self, data):
    if self.closed:
      raise response_body.StreamAborted("Data after the end of the body")
    if not self.dataWritten:
      # flup's gateway writes the whole CGI header block first.
      self._body_left = _DeclaredLength(data)
    elif self._body_left is not None:
      self._body_left -= len(data)
    fcgi_base.OutputStream.write(self, data)

  def flush(self):
    data = b"".join(self._bufList)
    self._bufList = []
    view = memoryview(data)
    size = self._req.server.maxwrite - fcgi_base.FCGI_HEADER_LEN
    buffers = []
    for start in range(0, len(view), size):
      buffers.extend(fastcgi_records.RecordBuffers(
        self._type, self._req.requestId, view[start:start + size]))
    if self._body_left == 0:
      buffers.extend(fastcgi_records.RecordBuffers(
        self._type, self._req.requestId, b""))
      buffers.extend(self._conn.EndRequestBuffers(self._req))
      self.closed = True
    else:
      self._conn.StartStreaming()
    _SendBuffers(self._conn.socket, buffers)


def _DeclaredLength(cgi_headers):
  """The Content-Length in a CGI header block, or None."""
  for line in cgi_headers.split(b"\r\n"):
    (name, _, value) = line.partition(b":")
    if name.strip().lower() == b"content-length":
      try:
        return int(value)
      except ValueError:
        return None
  return None


def _SendBuffers(sock, buffers):
  """Send all C{buffers}, in order, with as few system calls as possible."""
  buffers = [buffer for buffer in buffers if len(buffer)]
  while buffers:
    sent = sock.sendmsg(buffers[:1024])  # at most IOV_MAX buffers a call
    while sent:
      if sent >= len(buffers[0]):
        sent -= len(buffers.pop(0))
      else:
        buffers[0] = memoryview(buffers[0])[sent:]
        sent = 0


class _Request(fcgi_base.Request):
  """flup's request, minus its SIGALRM timeout, plus two endings flup lacks:

  - a body that fails mid-stream (L{response_body.StreamAborted}, or any
    error once the response has started) aborts the connection, so the
    client cannot take the cut body for complete;
  - lighttpd closing the connection (its client went away) is logged as
    such, not as a traceback.

  flup's gateway has already closed the WSGI body in both cases.  What the
  application left under L{wsgi_application.AFTER_CONNECTION_KEY} runs last,
  once lighttpd has closed the connection (or it was dropped).
  """

  def __init__(self, conn, input_stream_class, timeout):
    fcgi_base.Request.__init__(self, conn, input_stream_class, timeout)
    # FCGI_PARAMS contents, decoded once the stream ends (see _Connection).
    self.encoded_params = []
    self.encoded_params_size = 0
    # flup writes the CGI headers and each body chunk separately, then
    # flushes: buffered, each flush sends them as one record.
    self.stdout = _OutputStream(conn, self)
    # Whether FCGI_END_REQUEST went out already (see _OutputStream).
    self.end_sent = False

  def run(self):
    after_connection = []
    self.params[wsgi_application.AFTER_CONNECTION_KEY] = after_connection
    try:
      self._Run()
    finally:
      for function in after_connection:
        try:
          function()
        except Exception:  # pylint: disable=broad-except
          logging.exception("Error after the end of a FastCGI connection")

  def _Run(self):
    try:
      (protocol_status, app_status) = self.server.handler(self)
    except response_body.StreamAborted:
      self._conn.Abort()
      return
    except ConnectionError as err:
      logging.info("lighttpd closed the FastCGI connection: %s", err)
      return
    except Exception:  # pylint: disable=broad-except
      logging.exception("Error in the FastCGI gateway")
      if self.stdout.dataWritten:
        self._conn.Abort()  # as for StreamAborted: never a clean-looking end
        return
      self.server.error(self)
      (protocol_status, app_status) = (fcgi_base.FCGI_REQUEST_COMPLETE, 0)
    try:
      self._flush()
      self._end(app_status, protocol_status)
    except ConnectionError as err:
      logging.info("lighttpd closed the FastCGI connection: %s", err)


class FlupGateway(fcgi_base.BaseFCGIServer):
  """flup's FastCGI-to-WSGI gateway, without flup's socket and run loop.

  @param application: the WSGI application
  @param multiprocess: whether other processes serve the same socket
  @param max_connections: connections served at once, by all processes
      (the answer to FCGI_GET_VALUES)
  """

  request_class = _Request

  # Largest record flup writes, header included: 64 KiB of content, a
  # multiple of 8 so no padding is needed.  (Measured on a 1 GiB stream:
  # 16 KiB records were slower; a small socket buffer helps, see
  # _Connection.StartStreaming.)
  maxwrite = fcgi_base.FCGI_HEADER_LEN + 65528

  def __init__(self, application, multiprocess, max_connections):
    fcgi_base.BaseFCGIServer.__init__(self, application, multithreaded=True,
                                      multiprocess=multiprocess,
                                      debug=False)
    self.capability = {
      fcgi_base.FCGI_MAX_CONNS: max_connections,
      fcgi_base.FCGI_MAX_REQS: max_connections,
      fcgi_base.FCGI_MPXS_CONNS: 0,
    }

  def error(self, req):
    """Answer 500 without details; the traceback went to lighttpd's log."""
    req.stdout.write(b"Status: 500 Internal Server Error\r\n"
                     b"Content-Type: text/plain\r\n\r\n"
                     b"Internal error in the FastCGI backend\n")

  def ServeConnection(self, sock):
    """Serve every request arriving on one accepted connection."""
    _Connection(sock, None, self, None).run()


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
  very process it accepted (L{process_identity.Process}) and asks C{find_lighttpd} again
  once that one has exited.

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


class FastCgiListener(object):
  """Serves FastCGI connections in a fixed number of threads.

  Each thread accepts a connection and serves it itself, so a request is
  never handed from one thread to another (measured: the hand-off of an
  accept thread to a pool cost about as much as flup's whole request
  handling).  Only one thread of a process waits in accept() at a time, so
  a new connection wakes one thread, not all of them.

  @param gateway: a L{FlupGateway}
  @param listen_socket: a listening Unix socket
  @param max_threads: connections served at once; more wait in the backlog
  @param peer_check: a L{PeerCheck} every connection must pass, or None
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
    if not self._accept_lock.acquire(timeout=_POLL_INTERVAL):
      return None
    try:
      # Under load a connection is already waiting: no need to select().
      connection = self._TryAccept()
      if connection is None:
        select.select([self._socket], [], [], _POLL_INTERVAL)
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


class ForkedWorkers(object):
  """Several forked processes, each running a L{FastCgiListener}.

  Children accept on the same inherited listening socket; a child whose
  parent died stops accepting and exits.  The parent restarts children that
  die (L{Reap}) and stops them with SIGTERM, which lets each finish the
  requests it is serving.

  @param make_listener: C{make_listener()} returns the listener a child runs
  @param count: number of processes
  """

  def __init__(self, make_listener, count):
    self._make_listener = make_listener
    self._count = count
    self._pids = set()
    self._forked_at = {}  # pid -> time.monotonic() of its fork
    # Children that keep dying young are forked again after a growing
    # delay, not in a loop.
    self._restart_delay = 0.0
    self._restart_at = 0.0
    self._lock = threading.Lock()
    self._stopping = threading.Event()
    self._monitor = None

  def Start(self):
    """Fork the children, then watch them in a thread (see L{Reap})."""
    with self._lock:
      self._ForkMissing()
    self._stopping.clear()
    self._monitor = threading.Thread(target=self._Watch,
                                     name="FastCGIWorkerMonitor", daemon=True)
    self._monitor.start()

  def _Watch(self):
    while not self._stopping.wait(_POLL_INTERVAL):
      self.Reap()

  def _Fork(self):
    parent = os.getpid()
    memory_locked = _MemoryLocked()
    # Until the child has its own SIGTERM handler, the daemon's would run
    # there (and not stop it): hold SIGTERM back until then.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    try:
      pid = os.fork()
    except BaseException:
      signal.pthread_sigmask(signal.SIG_SETMASK, mask)
      raise
    if pid:
      signal.pthread_sigmask(signal.SIG_SETMASK, mask)
      return pid
    status = 1
    try:
      _LimitMallocArenas()
      if memory_locked:
        _LockMemory()
      child_reaper.RunInForkedChild()  # for children its handlers fork
      listener = self._make_listener()
      signal.signal(signal.SIGTERM, lambda *_: listener.Stop())
      for other in (signal.SIGINT, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(other, signal.SIG_DFL)
      signal.pthread_sigmask(signal.SIG_SETMASK, mask)
      listener.Serve(should_continue=lambda: os.getppid() == parent)
      status = 0
    except BaseException:  # pylint: disable=broad-except
      logging.exception("FastCGI worker process failed")
    finally:
      os._exit(status)  # pylint: disable=protected-access

  def Reap(self):
    """Collect children that exited; restart them unless stopping.

    A child that dies within L{_SHORT_LIFE} seconds of its start doubles
    the wait before the next restart (from L{_FIRST_RESTART_DELAY} up to
    L{_LAST_RESTART_DELAY}); one that lived longer resets it.

    @return: the number of children restarted
    """
    with self._lock:
      now = time.monotonic()
      for pid in list(self._pids):
        if self._stopping.is_set():
          return 0
        try:
          (done, status) = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
          # Someone else reaped it (Ganeti 3.2 runs a reaper thread).
          (done, status) = (pid, -1)
        if done:
          self._pids.discard(pid)
          if now - self._forked_at.pop(pid) < _SHORT_LIFE:
            self._restart_delay = min(
              max(2 * self._restart_delay, _FIRST_RESTART_DELAY),
              _LAST_RESTART_DELAY)
          else:
            self._restart_delay = 0.0
          self._restart_at = now + self._restart_delay
          logging.error("FastCGI worker %d exited (status %d); restarting"
                        " in %.1f s", pid, status, self._restart_delay)
      if self._stopping.is_set() or now < self._restart_at:
        return 0
      try:
        return self._ForkMissing()
      except OSError as err:  # out of processes or memory: try again later
        self._restart_delay = max(self._restart_delay, _FIRST_RESTART_DELAY)
        self._restart_at = now + self._restart_delay
        logging.error("Cannot fork a FastCGI worker (%s); trying again in"
                      " %.1f s", err, self._restart_delay)
        return 0

  def _ForkMissing(self):
    """Fork children until there are C{count}; return how many."""
    forked = 0
    while len(self._pids) < self._count:
      pid = self._Fork()
      self._pids.add(pid)
      self._forked_at[pid] = time.monotonic()
      forked += 1
    return forked

  @property
  def pids(self):
    """Process ids of the running children."""
    return frozenset(self._pids)

  def Stop(self, timeout):
    """SIGTERM every child, wait up to C{timeout} seconds, then SIGKILL."""
    self._stopping.set()
    if self._monitor is not None:
      self._monitor.join()
      self._monitor = None
    with self._lock:
      pids = set(self._pids)
      self._pids.clear()
      self._forked_at.clear()
    for pid in pids:
      _Signal(pid, signal.SIGTERM)
    _WaitForChildren(pids, timeout)
    for pid in pids:
      _Signal(pid, signal.SIGKILL)
    _WaitForChildren(pids, None)


def _LimitMallocArenas():
  """Cap the malloc arenas of this process (glibc; elsewhere a no-op).

  glibc gives each new thread an arena of its own, up to 8 per core, and
  each keeps the big buffers its thread freed: a worker whose threads
  have all moved large bodies grew towards 64 MiB (docs/performance.md).
  The threads of a worker take turns on its GIL anyway, so they gain
  little from arenas of their own.
  """
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return
  mallopt(_M_ARENA_MAX, WORKER_MALLOC_ARENAS)


#: mlockall()'s flags: lock what is mapped now and what will be.
_MCL_CURRENT_AND_FUTURE = 1 | 2


def _MemoryLocked():
  """Whether this process called mlockall() (Ganeti's node daemon does at
  start, so that it keeps working under memory pressure): most of its
  address space is locked, not merely a page some library mlock()ed."""
  sizes = {}
  try:
    with open("/proc/self/status") as status:
      for line in status:
        if line.startswith(("VmLck:", "VmSize:")):
          (name, value) = line.split()[:2]
          sizes[name] = int(value)
  except (OSError, ValueError):
    return False
  return sizes.get("VmLck:", 0) * 2 >= sizes.get("VmSize:", 1)


def _LockMemory():
  """Lock this worker's memory as the daemon's is: locks are not inherited
  across fork()."""
  libc = ctypes.CDLL(None, use_errno=True)
  if libc.mlockall(_MCL_CURRENT_AND_FUTURE) != 0:
    logging.warning("FastCGI worker process could not lock its memory as"
                    " the daemon did: %s", os.strerror(ctypes.get_errno()))


def _Signal(pid, signum):
  try:
    os.kill(pid, signum)
  except ProcessLookupError:
    pass


def _WaitForChildren(pids, timeout):
  """Reap the children in the set C{pids}, removing them from it, until
  none is left or C{timeout} seconds passed (None: no limit)."""
  deadline = None if timeout is None else time.monotonic() + timeout
  while True:
    for pid in list(pids):
      try:
        done = os.waitpid(pid, os.WNOHANG)[0]
      except ChildProcessError:
        done = pid
      if done:
        pids.discard(pid)
    if not pids or (deadline is not None and time.monotonic() >= deadline):
      return
    time.sleep(_POLL_INTERVAL / 4)


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
