"""CPU time per request of each Python layer of both backends.

Each layer is driven in a loop, in one thread, with no load generator and
no lighttpd, so the figures are the cost of the Python code itself:

  1. the shared pipeline and the bench handler;
  2. the fastcgi backend's WSGI adapter around it (headers rebuilt from a
     CGI environment as lighttpd sends it);
  3. flup under it: FastCGI records read from and written to a socket
     pair, the environment decoded, the connection shut down;
  4. the same with a Unix socket connection accepted per request, as
     lighttpd opens one per request;
  5. the whole FastCGI listener with its threads, driven by a client in
     another thread of the same process (so this one also counts the GIL
     passing between client and server, which lighttpd, a process of its
     own, does not cause);

and, for comparison, the legacy backend's request handler (stdlib HTTP
parsing plus the same pipeline) over a socket pair.

  .venv/bin/python -m bench.breakdown
"""

import io
import os
import socket
import struct
import sys
import tempfile
import threading
import time

from flup.server import fcgi_base

from ganeti.http.backends.fastcgi import flup_gateway
from ganeti.http.backends.fastcgi import listener as fastcgi_listener
from ganeti.http.backends.fastcgi import wsgi_application
from ganeti.http.backends.legacy import server as legacy_server
from ganeti.http.core import pipeline
from ganeti.http.core import server_options

from bench import measure
from bench import workload

#: CGI variables lighttpd 1.4 sends for the bench request (values as
#: captured from it, paths shortened).
LIGHTTPD_PARAMS = {
  "CONTENT_LENGTH": str(len(workload.REQUEST_BODY)),
  "QUERY_STRING": "",
  "REQUEST_URI": workload.PATH,
  "REDIRECT_STATUS": "200",
  "SCRIPT_NAME": "",
  "PATH_INFO": workload.PATH,
  "PATH_TRANSLATED": "/run/ganeti-http/x/empty-docroot" + workload.PATH,
  "SCRIPT_FILENAME": "/run/ganeti-http/x/empty-docroot/",
  "DOCUMENT_ROOT": "/run/ganeti-http/x/empty-docroot",
  "REQUEST_METHOD": "POST",
  "SERVER_PROTOCOL": "HTTP/1.1",
  "SERVER_SOFTWARE": "Ganeti 3.2 (ganeti-http-shim)",
  "GATEWAY_INTERFACE": "CGI/1.1",
  "REQUEST_SCHEME": "http",
  "SERVER_PORT": "1811",
  "SERVER_ADDR": "127.0.0.1",
  "SERVER_NAME": "127.0.0.1",
  "REMOTE_ADDR": "127.0.0.1",
  "REMOTE_PORT": "38244",
  "HTTP_HOST": "127.0.0.1:1811",
  "HTTP_CONTENT_LENGTH": str(len(workload.REQUEST_BODY)),
  "CONTENT_TYPE": workload.CONTENT_TYPE,
  "HTTP_USER_AGENT": "ApacheBench/2.3",
  "HTTP_ACCEPT": "*/*",
  "HTTP_CONNECTION": "Keep-Alive",
}

HTTP_REQUEST = (
  "POST %s HTTP/1.0\r\nContent-Length: %d\r\nContent-Type: %s\r\n"
  "Host: 127.0.0.1:1811\r\nUser-Agent: ApacheBench/2.3\r\nAccept: */*\r\n"
  "\r\n" % (workload.PATH, len(workload.REQUEST_BODY), workload.CONTENT_TYPE)
  ).encode("ascii") + workload.REQUEST_BODY


def _Record(record_type, content, request_id=1):
  """One FastCGI record, padded to a multiple of 8 bytes."""
  padding = -len(content) & 7
  return (struct.pack(fcgi_base.FCGI_Header, fcgi_base.FCGI_VERSION_1,
                      record_type, request_id, len(content), padding) +
          content + b"\0" * padding)


def FastCgiRequest(params=None, body=workload.REQUEST_BODY):
  """The bytes lighttpd sends for one request: begin, params, stdin."""
  params = LIGHTTPD_PARAMS if params is None else params
  encoded = b"".join(fcgi_base.encode_pair(name.encode(), value.encode())
                     for (name, value) in params.items())
  begin = struct.pack(fcgi_base.FCGI_BeginRequestBody,
                      fcgi_base.FCGI_RESPONDER, 0)
  return b"".join([_Record(fcgi_base.FCGI_BEGIN_REQUEST, begin),
                   _Record(fcgi_base.FCGI_PARAMS, encoded),
                   _Record(fcgi_base.FCGI_PARAMS, b""),
                   _Record(fcgi_base.FCGI_STDIN, body),
                   _Record(fcgi_base.FCGI_STDIN, b"")])


def _Pipeline():
  """The request pipeline as a server without TLS sets it up."""
  return pipeline.RequestPipeline(pipeline.ClientCertificatePolicy(False,
                                                                   None))


def _Application():
  """The WSGI application serving the bench handler."""
  handler = workload.JsonHandler()
  return wsgi_application.WsgiApplication(_Pipeline(), lambda: handler,
                                          tls=False)


def _Gateway():
  return flup_gateway.FlupGateway(_Application(), multiprocess=False,
                                     max_connections=20)


def _ReadAll(sock):
  chunks = []
  while True:
    chunk = sock.recv(65536)
    if not chunk:
      return b"".join(chunks)
    chunks.append(chunk)


def _SendRequest(path, request):
  """A client connected to the Unix socket C{path} that sent C{request}
  and its end."""
  client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
  try:
    client.connect(path)
    client.sendall(request)
    client.shutdown(socket.SHUT_WR)
  except OSError:
    client.close()
    raise
  return client


def _CheckOk(response):
  if workload.RESPONSE_BODY not in response:
    raise AssertionError("Unexpected response: %r" % response[:300])


def PipelineOnly():
  """Layer 1: C{RequestPipeline.Run} with the bench handler."""
  request_pipeline = _Pipeline()
  handler = workload.JsonHandler()
  headers = pipeline.HeadersFromPairs([
    ("Content-Length", str(len(workload.REQUEST_BODY))),
    ("Content-Type", workload.CONTENT_TYPE)])

  def _Once():
    incoming = pipeline.IncomingRequest(
      "POST", workload.PATH, headers, io.BytesIO(workload.REQUEST_BODY).read)
    response = request_pipeline.Run(handler, incoming)
    assert response.status == 200
  return _Once


def WsgiAdapter():
  """Layer 2: the WSGI application over a CGI environment."""
  application = _Application()

  def _StartResponse(status, headers):
    assert status.startswith("200"), status
    del headers

  def _Once():
    environ = dict(LIGHTTPD_PARAMS)
    environ["wsgi.input"] = io.BytesIO(workload.REQUEST_BODY)
    body = b"".join(application(environ, _StartResponse))
    assert body == workload.RESPONSE_BODY
  return _Once


def FlupSocketPair():
  """Layer 3: flup's connection handling over a socket pair."""
  gateway = _Gateway()
  request = FastCgiRequest()

  def _Once():
    (client, server) = socket.socketpair()
    try:
      client.sendall(request)
      client.shutdown(socket.SHUT_WR)
      gateway.ServeConnection(server)
      _CheckOk(_ReadAll(client))
    finally:
      client.close()
      server.close()
  return _Once


def FlupAccepted(directory):
  """Layer 4: as layer 3, on a Unix socket connection accepted each time."""
  gateway = _Gateway()
  request = FastCgiRequest()
  listener = fastcgi_listener.BindUnixSocket(os.path.join(directory, "l.sock"))

  def _Once():
    with _SendRequest(listener.getsockname(), request) as client:
      (server, _) = listener.accept()
      try:
        gateway.ServeConnection(server)
      finally:
        server.close()
      _CheckOk(_ReadAll(client))
  return (_Once, listener.close)


def LegacyHandler():
  """The legacy backend's handler (stdlib parsing + pipeline), socket pair."""
  options = server_options.ServerOptions.FromCall(
    "127.0.0.1", 0, workload.JsonHandler(), daemon_name="bench")
  server = legacy_server.LegacyHttpServer(options)

  def _Once():
    (client, conn) = socket.socketpair()
    try:
      client.sendall(HTTP_REQUEST)
      server.finish_request(conn, ("127.0.0.1", 0))
      conn.close()
      _CheckOk(_ReadAll(client))
    finally:
      client.close()
      conn.close()
  return (_Once, server.server_close)


def _Measure(function, count, rounds=5):
  """CPU seconds of this thread per call of C{function}, after a warm-up:
  the best of C{rounds} rounds of C{count} calls, each started once the
  machine is quiet (others' load slows even a single thread down)."""
  for _ in range(min(200, count)):
    function()
  best = None
  for _ in range(rounds):
    measure.WaitForQuiet()
    start = time.thread_time()
    for _ in range(count):
      function()
    seconds = (time.thread_time() - start) / count
    best = seconds if best is None else min(best, seconds)
  return best


def FullListener(directory, count, rounds=5):
  """Layer 5: C{FastCgiListener} with 20 threads serving a client in
  another thread; the client's own CPU time is subtracted.

  @return: server CPU seconds per request
  """
  listener_socket = fastcgi_listener.BindUnixSocket(
    os.path.join(directory, "f.sock"))
  listener = fastcgi_listener.FastCgiListener(_Gateway(), listener_socket, 20)
  thread = threading.Thread(target=listener.Serve, daemon=True)
  thread.start()
  request = FastCgiRequest()

  def _Once():
    with _SendRequest(listener_socket.getsockname(), request) as client:
      _CheckOk(_ReadAll(client))

  def _Round():
    measure.WaitForQuiet()
    process_start = time.process_time()
    client_start = time.thread_time()
    for _ in range(count):
      _Once()
    client = time.thread_time() - client_start
    return (time.process_time() - process_start - client) / count

  try:
    for _ in range(200):
      _Once()
    return min(_Round() for _ in range(rounds))
  finally:
    listener.Stop()
    thread.join()
    listener_socket.close()


def Layers(count=2000):
  """Return C{[(layer, CPU seconds per request)]}, in layer order."""
  results = [
    ("pipeline + handler", _Measure(PipelineOnly(), count)),
    ("WSGI adapter + pipeline + handler", _Measure(WsgiAdapter(), count)),
    ("flup over a socket pair + all of the above",
     _Measure(FlupSocketPair(), count)),
  ]
  with tempfile.TemporaryDirectory(prefix="bench-breakdown-") as directory:
    (once, close) = FlupAccepted(directory)
    try:
      results.append(("+ accepting a Unix socket connection per request",
                      _Measure(once, count)))
    finally:
      close()
    results.append(("+ FastCgiListener's threads, the client in another"
                    " thread of the same process (GIL hand-offs with it"
                    " included)", FullListener(directory, count)))
  (once, close) = LegacyHandler()
  try:
    results.append(("legacy: stdlib HTTP parsing + pipeline + handler,"
                    " socket pair", _Measure(once, count)))
  finally:
    close()
  return results


def main():
  """Print the cost of each layer."""
  for (layer, seconds) in Layers():
    print("%7.1f µs  %s" % (seconds * 1e6, layer))


if __name__ == "__main__":
  sys.exit(main())
