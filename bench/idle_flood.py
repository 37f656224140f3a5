"""Idle connections from one address against a valid client (issue 14).

  python -m bench.idle_flood [--backend fastcgi|legacy] [--mode MODE]
      [--connections N] [--trickle SECONDS] [--hold SECONDS] [--probes K]
      [--settle SECONDS] [--probe-timeout SECONDS]
      [--netns [--firewall [--max-per-address M]]]

Starts a server (L{bench.serve}, HTTPS requiring a client certificate, or
plain HTTP for C{--mode head}), opens N connections to it from 127.0.0.1
that never complete what they start, then sends K requests as a valid
client (the node certificate, a new connection each) while they are held,
and prints the valid client's latency (p50, max) and failures.

Modes: C{tcp} connects and sends nothing; C{tls-hello} sends a TLS
ClientHello and nothing more (the handshake stays open); C{head} sends the
start of a request head and nothing more (plain HTTP: without a valid
certificate no client gets past the TLS handshake).  With C{--trickle S}
each connection then sends one more byte every S seconds, which resets
any idle timer.

With C{--netns} the run happens in network (and PID, mount) namespaces of
its own (L{bench.flood_namespace}): the server listens on 192.0.2.1 at
the node daemon's port, the connections come from 192.0.2.2 and the valid
client from 192.0.2.3.  C{--firewall} then first loads, into that
namespace only, the nftables table C{ganeti-http firewall noded} prints
(with C{--max-per-address M} if given), which limits the connections one
source address holds.

Bounded: at most L{MAX_CONNECTIONS} connections for at most L{MAX_HOLD}
seconds, to 127.0.0.1 (or 192.0.2.1 in the run's own namespace) only,
from a child process that raises its own RLIMIT_NOFILE and closes
everything when its standard input closes or its time is up.  Everything started is stopped, the temporary directory
removed.
"""

import argparse
import http.client
import json
import os
import resource
import selectors
import socket
import ssl
import statistics
import subprocess
import sys
import time

from bench import flood_namespace
from bench import procs
from bench import run as bench_run
from bench import servers
from ganeti.http.backends import daemons
from ganeti.http.cli import firewall

#: Upper bounds of one run.
MAX_CONNECTIONS = 20000
MAX_HOLD = 300

#: Seconds the holder waits for more of its connections to be
#: established once none was for this long (a full listen queue drops
#: connection attempts, and the client only retries after 1, 3, 7 s...).
CONNECT_STALL = 3

#: Seconds a valid request may take before it counts as failed (default).
PROBE_TIMEOUT = 10

_LOOPBACK = "127.0.0.1"

#: The start of a request head, never finished (C{head} mode); trickled
#: bytes continue it with header lines.
_HEAD_START = b"POST /node_info HTTP/1.1\r\nHost: node1\r\n"
_HEAD_FILLER = b"X-Padding: a\r\n"

MODES = ("tcp", "tls-hello", "head")


def RaiseFdLimit(wanted):
  """Raise RLIMIT_NOFILE to C{wanted} (the hard limit too, as root)."""
  (soft, hard) = resource.getrlimit(resource.RLIMIT_NOFILE)
  if soft >= wanted:
    return
  if hard < wanted:
    if os.geteuid() != 0:
      raise SystemExit("RLIMIT_NOFILE hard limit %d is below %d; run as"
                       " root or with fewer connections" % (hard, wanted))
    hard = wanted
  resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def ClientHello():
  """The bytes of a TLS ClientHello, as a client sends it first (the same
  for every connection; tests use it too)."""
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  context.check_hostname = False
  context.verify_mode = ssl.CERT_NONE
  (incoming, outgoing) = (ssl.MemoryBIO(), ssl.MemoryBIO())
  tls = context.wrap_bio(incoming, outgoing)
  try:
    tls.do_handshake()
  except ssl.SSLWantReadError:
    pass
  return outgoing.read()


def _Payload(mode):
  """C{(start, continuation)}: what each connection sends first (whole, or
  byte by byte when trickling), and what trickling sends after it."""
  if mode == "tcp":
    return (b"", b"")
  if mode == "tls-hello":
    return (ClientHello(), b"")
  # Stays below lighttpd's 8 KiB header limit for over an hour of trickling
  return (_HEAD_START, _HEAD_FILLER * 500)


class _Holder(object):
  """N connections that each sent C{payload} (or its first byte, when
  trickling) and are then left open."""

  def __init__(self, address, port, source, count, payload, trickle):
    self._address = address
    self._port = port
    self._source = source
    self._count = count
    (self._start, continuation) = payload
    self._stream = self._start + continuation
    self._trickle = trickle
    self._selector = selectors.DefaultSelector()
    self._sent = {}     # socket -> bytes of the payload sent so far
    self.closed_by_server = 0

  def Open(self):
    """Open the connections; return how many got established."""
    pending = set()
    for _ in range(self._count):
      sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      sock.setblocking(False)
      if self._source:
        sock.bind((self._source, 0))
      sock.connect_ex((self._address, self._port))
      self._selector.register(sock, selectors.EVENT_WRITE)
      pending.add(sock)
    last_progress = time.monotonic()
    while pending and time.monotonic() - last_progress < CONNECT_STALL:
      for (key, _) in self._selector.select(0.5):
        sock = key.fileobj
        if sock not in pending:   # an established one the server wrote to
          self._Drain(sock)
          continue
        last_progress = time.monotonic()
        pending.discard(sock)
        self._selector.unregister(sock)
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
          sock.close()
          continue
        self._sent[sock] = 0
        self._SendNext(sock, 1 if self._trickle else len(self._start))
        self._selector.register(sock, selectors.EVENT_READ)
    for sock in pending:
      self._selector.unregister(sock)
      sock.close()
    return len(self._sent)

  def _SendNext(self, sock, size):
    """Send the next C{size} bytes (if any are left)."""
    done = self._sent[sock]
    chunk = self._stream[done:done + size]
    if not chunk:
      return
    try:
      self._sent[sock] += sock.send(chunk)
    except OSError:
      pass

  def Hold(self, seconds, stop_fd):
    """Keep the connections (trickling if asked) for C{seconds} or until
    C{stop_fd} is readable; read and drop what the server sends."""
    self._selector.register(stop_fd, selectors.EVENT_READ)
    deadline = time.monotonic() + seconds
    next_trickle = time.monotonic() + (self._trickle or seconds)
    while time.monotonic() < deadline:
      for (key, _) in self._selector.select(0.5):
        if key.fileobj is stop_fd:
          return
        self._Drain(key.fileobj)
      if self._trickle and time.monotonic() >= next_trickle:
        for sock in list(self._sent):
          self._SendNext(sock, 1)
        next_trickle += self._trickle

  def _Drain(self, sock):
    try:
      data = sock.recv(65536)
    except OSError:
      data = b""
    if not data:
      self.closed_by_server += 1
      self._selector.unregister(sock)
      del self._sent[sock]
      sock.close()

  def Close(self):
    """Close every connection still open."""
    for sock in list(self._sent):
      sock.close()
    self._sent.clear()
    self._selector.close()


def HoldMain(args):
  """The child: open, report, hold, report, close."""
  RaiseFdLimit(args.connections + 64)
  holder = _Holder(args.address, args.port, args.source, args.connections,
                   _Payload(args.mode), args.trickle)
  try:
    opened = holder.Open()
    print(json.dumps({"open": opened}), flush=True)
    holder.Hold(args.hold, sys.stdin)
    print(json.dumps({"closed_by_server": holder.closed_by_server}),
          flush=True)
  finally:
    holder.Close()


def _ValidRequest(target, tls, client_cert, source, timeout):
  """Seconds one request of a valid client (from C{source}, if given) to
  C{target} (address, port) took, or None if it failed."""
  (address, port) = target
  source_address = (source, 0) if source else None
  start = time.monotonic()
  if tls:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(client_cert)
    connection = http.client.HTTPSConnection(
      address, port, timeout=timeout, context=context,
      source_address=source_address)
  else:
    connection = http.client.HTTPConnection(address, port, timeout=timeout,
                                            source_address=source_address)
  try:
    connection.request("GET", "/")
    response = connection.getresponse()
    response.read()
    if response.status >= 500:
      return None
  except (OSError, http.client.HTTPException):
    return None
  finally:
    connection.close()
  return time.monotonic() - start


def _LighttpdRssKiB(server_pid):
  """lighttpd's resident memory now, in KiB."""
  total = 0
  for pid in procs.Named(procs.Descendants([server_pid]), "lighttpd"):
    try:
      with open("/proc/%d/status" % pid) as handle:
        total += sum(int(line.split()[1]) for line in handle
                     if line.startswith("VmRSS:"))
    except OSError:
      continue
  return total


def _StartHolder(args, address, port, source):
  command = [sys.executable, "-m", "bench.idle_flood", "--hold-only",
             "--address", address, "--port", str(port), "--mode", args.mode,
             "--connections", str(args.connections),
             "--hold", str(args.hold)]
  if args.trickle:
    command.extend(["--trickle", str(args.trickle)])
  if source:
    command.extend(["--source", source])
  return subprocess.Popen(command, cwd=servers.REPO, stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE,
                          env=dict(os.environ, PYTHONPATH=servers.REPO))


def _StopHolder(holder):
  """Stop the holder; return how many connections the server closed."""
  holder.stdin.close()
  try:
    holder.wait(30)
  except subprocess.TimeoutExpired:
    holder.kill()
    holder.wait()
  report = json.loads(holder.stdout.read() or b"{}")
  holder.stdout.close()
  return report.get("closed_by_server")


def _Measure(args, server, client_cert, sources):
  """Flood from C{sources[0]}, probe from C{sources[1]} (None: any
  address), return the result as a dict."""
  (flood_source, valid_source) = sources
  holder = _StartHolder(args, server.address, server.port, flood_source)
  try:
    opened = json.loads(holder.stdout.readline() or b"{}").get("open")
    if opened is None:
      raise SystemExit("The holder did not start")
    time.sleep(args.settle)
    started = time.monotonic()
    rss = _LighttpdRssKiB(server.pid)
    latencies = []
    for _ in range(args.probes):
      latencies.append(_ValidRequest((server.address, server.port),
                                     server.tls, client_cert, valid_source,
                                     args.probe_timeout))
      time.sleep(args.interval)
    probing = time.monotonic() - started
  finally:
    closed = _StopHolder(holder)
  answered = [value for value in latencies if value is not None]
  return {
    "mode": args.mode + (" trickling every %ss" % args.trickle
                         if args.trickle else ""),
    "attempted": args.connections, "held": opened,
    "probes": len(latencies),
    "failed": len(latencies) - len(answered),
    "p50_s": round(statistics.median(answered), 3) if answered else None,
    "max_s": round(max(answered), 3) if answered else None,
    "probing_s": round(probing, 1),
    "closed_by_server": closed,
    "lighttpd_rss_kib": rss,
    }


def _ParseArgs(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--backend", choices=("fastcgi", "legacy"),
                      default="fastcgi")
  parser.add_argument("--mode", choices=MODES, default="tcp")
  parser.add_argument("--connections", type=int, default=10000)
  parser.add_argument("--trickle", type=float, default=0,
                      help="send one more byte per connection every this"
                           " many seconds (0: never)")
  parser.add_argument("--hold", type=float, default=60,
                      help="longest time the connections are held")
  parser.add_argument("--probes", type=int, default=20,
                      help="valid requests sent while they are held")
  parser.add_argument("--interval", type=float, default=0.5,
                      help="seconds between valid requests")
  parser.add_argument("--settle", type=float, default=0,
                      help="seconds to wait after the connections are"
                           " open before the first valid request (the"
                           " server may still be accepting them)")
  parser.add_argument("--probe-timeout", type=float, default=PROBE_TIMEOUT,
                      help="seconds before a valid request counts as"
                           " failed (default: %(default)s)")
  parser.add_argument("--netns", action="store_true",
                      help="run in network namespaces of its own: flood"
                           " and valid client from two addresses")
  parser.add_argument("--firewall", action="store_true",
                      help="with --netns: load `ganeti-http firewall"
                           " noded` into the namespace first")
  parser.add_argument("--max-per-address", type=int,
                      help="with --firewall: its --max-per-address")
  parser.add_argument("--hold-only", action="store_true",
                      help=argparse.SUPPRESS)
  parser.add_argument("--address", default=_LOOPBACK, help=argparse.SUPPRESS)
  parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
  parser.add_argument("--source", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if not 1 <= args.connections <= MAX_CONNECTIONS:
    parser.error("--connections must be 1..%d" % MAX_CONNECTIONS)
  if not 0 < args.hold <= MAX_HOLD:
    parser.error("--hold must be at most %d seconds" % MAX_HOLD)
  if args.trickle < 0:
    parser.error("--trickle must not be negative")
  if args.firewall and not args.netns:
    parser.error("--firewall needs --netns (rules go into the run's own"
                 " namespace only)")
  if args.max_per_address is not None and not args.firewall:
    parser.error("--max-per-address needs --firewall")
  return args


def _Firewall(args):
  """Load the table into the namespace; return its limit (None: none)."""
  if not args.firewall:
    return None
  if args.max_per_address is None:
    flood_namespace.LoadFirewall(["noded"])
    return firewall.DEFAULT_MAX_PER_ADDRESS
  flood_namespace.LoadFirewall(["noded", "--max-per-address",
                                str(args.max_per_address)])
  return args.max_per_address


def main(argv=None):
  """Run one measurement and print it as a JSON line."""
  args = _ParseArgs(argv)
  if args.hold_only:
    HoldMain(args)
    return
  if args.netns and not flood_namespace.Inside():
    flood_namespace.Enter(sys.argv[1:] if argv is None else argv)
  (address, port, sources, limit) = (_LOOPBACK, 0, (None, None), None)
  if args.netns:
    flood_namespace.AddAddresses()
    limit = _Firewall(args)
    (address, port) = (flood_namespace.SERVER,
                       daemons.Port(daemons.Find("noded")))
    sources = (flood_namespace.FLOOD_SOURCE, flood_namespace.VALID_SOURCE)
  workspace = bench_run.Workspace()
  tls = args.mode != "head"
  server = servers.ServerProcess(
    servers.TargetSpec(args.backend, args.backend), workspace.config_path,
    os.path.join(workspace.logs_dir, "server.log"),
    tls_pem=workspace.pki.cluster.path if tls else None,
    client_digest=workspace.pki.node.digest if tls else None,
    extra_args=["--address", address, "--port", str(port)])
  try:
    server.Start()
    result = _Measure(args, server, workspace.pki.node.path, sources)
    result["backend"] = args.backend
    result["per_address_limit"] = limit
    print(json.dumps(result))
  finally:
    server.Stop()
    workspace.Close()


if __name__ == "__main__":
  main()
