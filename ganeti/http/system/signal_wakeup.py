"""Waking Ganeti 3.0/3.1's main loop when a signal lands in another thread.

Their C{daemon.Mainloop} waits in C{poll()} (asyncore) without timeout and
learns of SIGTERM, SIGINT and SIGCHLD from Python's handlers, which run in
the main thread only.  In a single-threaded daemon (stock Ganeti) the kernel
interrupts that C{poll()}.  Our servers add threads, and the kernel may hand
a process's signal to any thread that does not block it: the handler's
flag is set, but the main thread sleeps on, and a SIGTERM from
C{daemon-util stop} went unanswered until C{start-stop-daemon} killed the
daemon 30 s later (seen with a child process per connection: each exiting
child sends SIGCHLD, so the main thread often had a signal pending and the
kernel picked another thread).

L{Install} makes Python's C-level handler, which runs in whatever thread got
the signal, also write a byte to a socket that the main loop polls
(C{signal.set_wakeup_fd}); the main thread wakes, runs the handlers, and
Ganeti's loop sees their flags.
"""

import logging
import signal
import socket
import threading
import warnings

_lock = threading.Lock()
_installed = False


def Install():
  """Have every signal wake the asyncore main loop of this process (once;
  from the main thread, before the main loop runs).  Nothing is done if a
  wakeup descriptor is set already (its owner handles signals), outside
  the main thread, or where asyncore is gone (Python 3.12 and later, which
  Ganeti 3.0/3.1 do not run on)."""
  global _installed  # pylint: disable=global-statement
  with _lock:
    if _installed or threading.current_thread() is not threading.main_thread():
      return
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", DeprecationWarning)
      try:
        import asyncore  # pylint: disable=import-outside-toplevel
      except ImportError:
        return
    (reader, writer) = socket.socketpair()
    writer.setblocking(False)
    if signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False) != -1:
      signal.set_wakeup_fd(-1)  # not ours to replace
      reader.close()
      writer.close()
      return
    _MakeDrain(asyncore, reader)
    # Kept for the life of the process, as the wakeup descriptor is.
    _installed = (reader, writer)
    logging.debug("Signals wake the main loop through descriptor %d",
                  writer.fileno())


def _MakeDrain(asyncore, sock):
  """Register C{sock} in asyncore's map: readable, its bytes discarded."""

  class _Drain(asyncore.dispatcher):
    def writable(self):
      return False

    def handle_read(self):
      try:
        self.recv(4096)
      except BlockingIOError:
        pass

  return _Drain(sock)
