"""Lines lighttpd writes into a pipe, read in a thread; the reading paused
in the daemon and resumed in a process forked from it.

lighttpd's error log (its standard error, L{error_log}) and its access log
(L{access_log}) reach the daemon through pipes.  A L{LineReader} cuts what
comes into lines and hands each to a function.  When lighttpd outlives the
daemon (a lighttpd released at the daemon's stop), the daemon pauses its
readers, keeping the pipes open and the start of a line not yet ended,
and forks the L{drainer<ganeti.http.backends.fastcgi.drainer>}, which
resumes them: no line is lost or cut in two.
"""

import os
import select
import threading

#: Bytes read at once; a line this long without its end is a line of its
#: own.
READ_SIZE = 64 * 1024


class LineReader(object):
  """Reads the pipe C{read_end} (which this object closes) in a thread
  until end-of-file (every copy of the write end closed) and calls
  C{on_line(line)} for each line: bytes, without the newline; a last
  line without newline too.

  @param name: the thread's name
  """

  def __init__(self, read_end, on_line, name):
    self._read_end = read_end
    self._on_line = on_line
    self._name = name
    self._pending = b""
    self._lock = threading.Lock()
    self._ended = False  # end-of-file reached, pipe closed
    self._wake = None
    self._thread = None
    self.Resume()

  def fileno(self):
    """The pipe's read end (for a process forked while paused to keep)."""
    return self._read_end

  def Join(self, timeout):
    """Wait up to C{timeout} seconds (None: no limit) for the end of the
    pipe and for its last line to be handed on."""
    self._thread.join(timeout)

  def Pause(self):
    """Stop reading, keeping the pipe and the start of a line for
    L{Resume} (in this process or a forked one); nothing if the end of
    the pipe came first."""
    with self._lock:
      if self._ended:
        return
      os.write(self._wake[1], b"x")
    self._thread.join()
    with self._lock:
      if not self._ended:
        self._CloseWake()

  def Resume(self):
    """Read in a new thread (after L{Pause}; nothing if the pipe ended)."""
    if self._ended:
      return
    self._wake = os.pipe2(os.O_CLOEXEC)
    self._thread = threading.Thread(target=self._Run, name=self._name,
                                    daemon=True)
    self._thread.start()

  def Close(self):
    """After L{Pause}: close this process's copy of the pipe (a forked
    process reads on)."""
    with self._lock:
      if not self._ended:
        self._ended = True
        os.close(self._read_end)

  def _Run(self):
    poller = select.poll()
    poller.register(self._read_end, select.POLLIN)
    poller.register(self._wake[0], select.POLLIN)
    paused = False
    try:
      while True:
        ready = dict(poller.poll())
        if self._wake[0] in ready:
          paused = True
          return
        data = os.read(self._read_end, READ_SIZE)
        if not data:
          break
        self._Feed(data)
      if self._pending:
        (line, self._pending) = (self._pending, b"")
        self._on_line(line)
    finally:
      if not paused:
        with self._lock:
          self._ended = True
          os.close(self._read_end)
          self._CloseWake()

  def _Feed(self, data):
    lines = (self._pending + data).split(b"\n")
    self._pending = lines.pop()
    if len(self._pending) >= READ_SIZE:  # no end in sight: a line of its own
      lines.append(self._pending)
      self._pending = b""
    for line in lines:
      self._on_line(line)

  def _CloseWake(self):
    for descriptor in self._wake:
      os.close(descriptor)
    self._wake = None
