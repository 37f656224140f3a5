"""When the HTTPS client waits for "100 Continue" before sending a body.

The race it closes: a server that keeps connections may close an idle one
just as the client sends a request on it.  lighttpd's graceful stop (a
fastcgi daemon stopping; lighttpd 1.4.69, C{connection_graceful_shutdown_
maint}) closes at once every connection waiting for its next request,
without reading what has arrived on it.  libcurl then sends the request
again on a new connection, but L{client_connections} lets it do so only
when none of the body went out (a Ganeti RPC is not safe to repeat: the
server may have run it); once part of the body is out the request fails
(C{client_bodies.NOT_SENT_AGAIN}).

What this module decides (L{WaitsForContinue}): a request that libcurl
may not send again (L{client_connections.MayResend}), that has a body, to
a server known in this process to keep connections, is sent with
C{Expect: 100-continue} (replacing the empty C{Expect:} Ganeti's RPC
client sends), and libcurl sends the body only once the server answered
"100 Continue" (RFC 9110, section 10.1.1).  Then:

  - if lighttpd closes the idle connection before reading the request's
    head, no byte of the body went out: libcurl sends the request again on
    a new connection (the body is rewound: nothing of it was read), which
    the next daemon, or the keeper of its listening socket, accepts;
  - if lighttpd read the head first, the connection is no longer idle:
    lighttpd answers "100 Continue" as soon as its FastCGI handler starts
    reading the body, before it talks to the backend
    (C{connection_check_expect_100}, for HTTP/1.1 requests whose body has
    not started to arrive), and its graceful stop lets the request finish.

B{Known to keep connections} (L{ServerMemory}): per host and port, the
last response from there that told: HTTP/1.1 without C{Connection: close}
marks the server as keeping connections; C{Connection: close} (or an older
HTTP version) on a new connection forgets it.  A close on a kept
connection does not: that is a keeping server ending one connection
(lighttpd after C{server.max-keep-alive-requests}, or in its graceful
stop), and its other kept connections still need the guard.  An HTTP/2
response does not count (lighttpd's C{server.h2proto} is off in the
configuration this package renders): HTTP/2 ends a connection with
GOAWAY, which names the last request the server took; not tried here.

B{Only there}, because of L{TIMEOUT_MS}: a server that never answers
"100 Continue" makes libcurl wait that long before sending the body.
Ganeti's own server (C{lib/http/server.py} of 3.0.2 and 3.1.1) does not
implement it (hence the empty C{Expect:} of Ganeti's RPC client) and
answers every request with C{Connection: close} ("Keep-alive is not
supported"), as does this package's legacy backend, so they are never
asked.  Only the first request to a node that went back
from a keeping server to one that never answers 100 (the package removed
after the fastcgi backend ran there) waits, once per process and node.

Nothing changes with connection reuse off (L{client_connections.
KeepAliveEnabled}): no request goes on a kept connection.
"""

import threading

import pycurl

from ganeti.http import client_connections

#: The header line that asks the server to confirm before the body.
EXPECT_CONTINUE = "Expect: 100-continue"

#: Milliseconds libcurl waits for "100 Continue" before sending the body
#: anyway.  libcurl's default: a server that answers 100 (lighttpd, the
#: legacy backend) answers within a round trip, so the wait only matters
#: for one that never does (above), where a longer one would cost more;
#: a shorter one would send the body early to a lighttpd that is merely
#: slow (a loaded node), and reopen the race for that request.
TIMEOUT_MS = 1000


class ServerMemory(object):
  """The servers (host, port) known in this process to keep connections."""

  def __init__(self):
    self._lock = threading.Lock()
    self._keeping = set()

  def KeepsConnections(self, server):
    """Tell whether C{server} is known to keep connections."""
    with self._lock:
      return server in self._keeping

  def Learn(self, server, response, new_connection):
    """Take in a response from C{server}.

    @type response: L{ResponseHead}
    @param new_connection: whether the response came on a connection made
      for its request
    """
    with self._lock:
      if response.keeps_connection:
        self._keeping.add(server)
      elif response.keeps_connection is not None and new_connection:
        self._keeping.discard(server)


_servers = ServerMemory()


def Servers():
  """The process's L{ServerMemory}."""
  return _servers


class ResponseHead(object):
  """Follows the header lines of a transfer's responses (curl's
  HEADERFUNCTION gives each line, interim responses' too).

  @ivar keeps_connection: None before a status line, then whether the
    last response leaves its connection open: HTTP/1.1 without
    C{Connection: close}
  """

  def __init__(self):
    self.keeps_connection = None

  def Line(self, line):
    """Take one header line (bytes, with its CRLF)."""
    text = line.decode("iso-8859-1")
    if text.startswith("HTTP/"):
      self.keeps_connection = text.split(" ", 1)[0] == "HTTP/1.1"
      return
    (name, sep, value) = text.partition(":")
    if sep and name.strip().lower() == "connection" and \
        "close" in [token.strip().lower() for token in value.split(",")]:
      self.keeps_connection = False


def WaitsForContinue(method, body_size, server):
  """Tell whether a request on a connection that may be a kept one waits
  for "100 Continue" before its body.

  @param body_size: bytes of the body
  @param server: C{(host, port)}
  """
  return (body_size > 0 and not client_connections.MayResend(method) and
          _servers.KeepsConnections(server))


def AskToContinue(curl, headers):
  """Set C{curl} to wait for "100 Continue"; return C{headers} (a list of
  C{"Name: value"} lines) with C{Expect: 100-continue} in place of any
  C{Expect} line."""
  curl.setopt(pycurl.EXPECT_100_TIMEOUT_MS, TIMEOUT_MS)
  kept = [line for line in headers
          if line.partition(":")[0].strip().lower() != "expect"]
  return kept + [EXPECT_CONTINUE]
