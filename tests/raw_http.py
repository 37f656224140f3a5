"""Raw HTTP over a socket, for tests that must send bytes no HTTP client
would (or watch the connection itself): read an answer to its end, and
the status and client port of one request."""

import socket


def ReadUntilClosed(sock):
  """Everything C{sock} (plain or TLS) receives until the peer closes."""
  received = b""
  while True:
    data = sock.recv(65536)
    if not data:
      return received
    received += data


def StatusAndClientPort(port, request):
  """Send raw C{request} to 127.0.0.1:C{port}, read the answer until the
  server closes; return C{(status, client port)}.

  The request must make the server close after answering (HTTP/1.0, or
  C{Connection: close}), or this waits for its keep-alive timeout.
  """
  with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
    client_port = sock.getsockname()[1]
    sock.sendall(request)
    received = ReadUntilClosed(sock)
  return (int(received.split(b" ", 2)[1]), client_port)
