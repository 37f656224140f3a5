"""The master side of the simulated cluster: Ganeti-shaped RPC fan-outs.

  python -m bench.cluster_master --ca PEM --cert PEM [--seconds S]
      [--connection-cap N|none] PORT...

Each call is one C{ProcessRequests} with one PUT per node (port), as
Ganeti's RPC runner sends a procedure to every node at once, with the
C{curl_config_fn} Ganeti 3.0's RPC client uses.  Calls follow each other
for C{--seconds} after half a second of warm-up.  Whether connections are
kept is the client's own switch (C{GANETI_HTTP_CLIENT_KEEPALIVE}), set by
the caller in this process's environment; C{--no-expect} measures the
client as it was before it waited for "100 Continue" on kept connections.

Prints one JSON line: C{calls}, C{rpcs}, C{seconds}, C{call_p50_ms},
C{call_p99_ms}, C{cpu_us_per_rpc} (this process's user+system CPU, which
is only the client) and C{errors} (the first failure's message, or None).
"""

import argparse
import json
import math
import sys
import time

import pycurl

from ganeti.http import client
from ganeti.http import client_expect

from bench import workload

WARM_UP_SECONDS = 0.5


def RpcCurlConfig(ca_path, cert_path):
  """The C{curl_config_fn} of Ganeti 3.0's node RPC (C{_ConfigRpcCurl}):
  the cluster certificate as CA, no host name check, the node's client
  certificate."""
  def _Configure(curl):
    curl.setopt(pycurl.FOLLOWLOCATION, False)
    curl.setopt(pycurl.CAINFO, ca_path)
    curl.setopt(pycurl.SSL_VERIFYHOST, 0)
    curl.setopt(pycurl.SSL_VERIFYPEER, True)
    curl.setopt(pycurl.SSLCERTTYPE, "PEM")
    curl.setopt(pycurl.SSLCERT, cert_path)
    curl.setopt(pycurl.SSLKEYTYPE, "PEM")
    curl.setopt(pycurl.SSLKEY, cert_path)
    curl.setopt(pycurl.CONNECTTIMEOUT, 5)
  return _Configure


def Percentile(values, percent):
  """The nearest-rank C{percent}th percentile of C{values}."""
  ordered = sorted(values)
  rank = max(1, int(math.ceil(percent / 100.0 * len(ordered))))
  return ordered[rank - 1]


def _Call(ports, config):
  """One fan-out; return the first error or None."""
  requests = [client.HttpClientRequest("127.0.0.1", port, "PUT",
                                       workload.PATH,
                                       post_data=workload.REQUEST_BODY,
                                       read_timeout=60,
                                       curl_config_fn=config)
              for port in ports]
  client.ProcessRequests(requests)
  for req in requests:
    if not req.success or req.resp_status_code != 200:
      return "%s: %s %s" % (req, req.resp_status_code, req.error)
  return None


def Run(ports, config, seconds):
  """Warm up, then fan out until C{seconds} have passed."""
  deadline = time.monotonic() + WARM_UP_SECONDS
  while time.monotonic() < deadline:
    _Call(ports, config)
  durations = []
  error = None
  cpu_start = time.process_time()
  start = time.monotonic()
  deadline = start + seconds
  while time.monotonic() < deadline:
    call_start = time.monotonic()
    error = _Call(ports, config) or error
    durations.append(time.monotonic() - call_start)
  elapsed = time.monotonic() - start
  cpu = time.process_time() - cpu_start
  rpcs = len(durations) * len(ports)
  return {"calls": len(durations), "rpcs": rpcs, "seconds": elapsed,
          "call_p50_ms": Percentile(durations, 50) * 1000,
          "call_p99_ms": Percentile(durations, 99) * 1000,
          "cpu_us_per_rpc": cpu / rpcs * 1e6, "errors": error}


def main(argv=None):
  """Run the fan-outs, print the figures."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("ports", type=int, nargs="+")
  parser.add_argument("--ca", required=True)
  parser.add_argument("--cert", required=True)
  parser.add_argument("--seconds", type=float, default=5)
  parser.add_argument("--connection-cap", default="none",
                      help="libcurl's cap on open connections: none"
                           " (Ganeti 3.0, 3.1) or a number (3.2: 30)")
  parser.add_argument("--no-expect", action="store_true",
                      help="never wait for 100 Continue (the client before"
                           " ganeti/http/client_expect.py)")
  args = parser.parse_args(argv)
  # pylint: disable=protected-access
  client._MAX_TOTAL_CONNECTIONS = (None if args.connection_cap == "none"
                                   else int(args.connection_cap))
  if args.no_expect:
    client_expect.WaitsForContinue = lambda *_: False
  result = Run(args.ports, RpcCurlConfig(args.ca, args.cert), args.seconds)
  sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
  main()
