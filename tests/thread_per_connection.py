"""A TCP listener on 127.0.0.1 that serves each connection in a thread of
its own, for test servers and relays written in a few lines."""

import socket
import threading


class ThreadPerConnection(object):
  """Accepts connections on a port of its own and runs C{serve(sock)} for
  each in a new thread.

  @ivar port: the port it listens on
  @ivar connections: connections accepted so far
  """

  def __init__(self, serve):
    self._serve = serve
    self._listener = socket.create_server(("127.0.0.1", 0))
    self.port = self._listener.getsockname()[1]
    self.connections = 0
    self._threads = [threading.Thread(target=self._Accept)]
    self._threads[0].start()

  def _Accept(self):
    while True:
      try:
        (sock, _) = self._listener.accept()
      except OSError:
        return
      self.connections += 1
      thread = threading.Thread(target=self._serve, args=(sock, ))
      self._threads.append(thread)
      thread.start()

  def StopAccepting(self):
    """Close the listening socket (waking the accepting thread)."""
    self._listener.shutdown(socket.SHUT_RDWR)
    self._listener.close()

  def Join(self, timeout=10):
    """Wait for every thread, each at most C{timeout} seconds."""
    for thread in self._threads:
      thread.join(timeout)
