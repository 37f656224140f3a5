"""A simulated Ganeti cluster: RPC fan-outs to N node daemons.

  python bench/cluster.py [--nodes 1,16,64] [--seconds 4] [--modes M,...]
      [--output FILE]

For each N, starts N node daemons per backend, each its own process (and
lighttpd) on its own loopback port, serving HTTPS with the cluster
certificate and accepting only the node client certificate, as Ganeti's
node daemon does.  A master process (L{bench.cluster_master}) then sends
fan-outs, one PUT per node in one C{ProcessRequests}, for a fixed time, in
these ways (C{--modes}, default the first four) side by side:

  - legacy-new: legacy nodes, new connection per RPC (the client before
    reuse);
  - fastcgi-new: fastcgi nodes, new connections;
  - fastcgi-kept: fastcgi nodes, connections kept (the client's default
    now);
  - legacy-kept: legacy nodes, connections kept (the legacy backend closes
    them: the client must be no worse than before);
  - fastcgi-kept-noexpect: as fastcgi-kept, but the client never waits
    for "100 Continue" (as before ganeti/http/client_expect.py);
  - legacy30-new, fastcgi30p1-kept, fastcgi30p2-kept: nodes whose
    C{HttpServer} is called as Ganeti 3.0/3.1's noded calls it (a forked
    child per connection; fastcgi with 1 or 2 FastCGI processes).

"vs before" compares with the first mode given.

Without Ganeti the client caps open connections at 3.2's 30; the master
runs with 3.0's behaviour (no cap), and the 64-node fan-out once more
with 3.2's cap.  Prints a Markdown table (and writes it to C{--output}).
"""

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=wrong-import-position
from bench import measure
from bench import run
from bench import servers

_LEGACY_30 = servers.TargetSpec("legacy, 3.0 signature", "legacy",
                                signature="3.0")


def _FastCgi30(processes):
  return servers.TargetSpec("fastcgi, %d processes, 3.0 signature" %
                            processes, "fastcgi", processes, "3.0")


#: name: (row label, node backend, connections kept)
MODES = {
  "legacy-new": ("legacy, new connections (before)", run.LEGACY, False),
  "fastcgi-new": ("fastcgi, new connections", run.FastCgi(1), False),
  "fastcgi-kept": ("fastcgi, connections kept", run.FastCgi(1), True),
  "legacy-kept": ("legacy, connections kept", run.LEGACY, True),
  "fastcgi-kept-noexpect": ("fastcgi, connections kept, no 100 Continue",
                            run.FastCgi(1), True),
  "legacy30-new": ("legacy 3.0 signature, new connections", _LEGACY_30,
                   False),
  "fastcgi30p1-kept": ("fastcgi 3.0 signature, processes = 1, kept",
                       _FastCgi30(1), True),
  "fastcgi30p2-kept": ("fastcgi 3.0 signature, processes = 2, kept",
                       _FastCgi30(2), True),
}
DEFAULT_MODES = "legacy-new,fastcgi-new,fastcgi-kept,legacy-kept"
#: The master's extra arguments in some modes
_MASTER_ARGS = {"fastcgi-kept-noexpect": ["--no-expect"]}


def _StartNodes(stack, workspace, spec, count):
  ports = []
  for index in range(count):
    node = servers.ServerProcess(
      spec, workspace.config_path,
      workspace.LogPath(spec, True, role="node%d" % index),
      tls_pem=workspace.pki.cluster.path,
      client_digest=workspace.pki.node.digest)
    node.Start()
    stack.callback(node.Stop)
    ports.append(node.port)
  return ports


def _Master(workspace, ports, mode, seconds, cap):
  env = dict(os.environ,
             GANETI_HTTP_CLIENT_KEEPALIVE="1" if MODES[mode][2] else "0",
             PYTHONPATH=servers.REPO)
  command = [sys.executable, "-m", "bench.cluster_master",
             "--ca", workspace.pki.cluster.path,
             "--cert", workspace.pki.node.path,
             "--seconds", str(seconds), "--connection-cap", cap]
  command += _MASTER_ARGS.get(mode, [])
  out = subprocess.run(command + [str(port) for port in ports],
                       check=True, capture_output=True, text=True,
                       cwd=servers.REPO, env=env, timeout=600).stdout
  return json.loads(out)


def Measure(nodes_list, seconds, modes):
  """Run the modes (names of L{MODES}) for every node count; return result
  rows."""
  rows = []
  specs = []
  for name in modes:
    if MODES[name][1] not in specs:
      specs.append(MODES[name][1])
  workspace = run.Workspace()
  try:
    for count in nodes_list:
      caps = ["none"] + (["30"] if count > 30 else [])
      for spec in specs:
        with contextlib.ExitStack() as stack:
          ports = _StartNodes(stack, workspace, spec, count)
          for name in modes:
            (label, mode_spec, _) = MODES[name]
            if mode_spec != spec:
              continue
            for cap in caps:
              load = measure.WaitForQuiet()
              result = _Master(workspace, ports, name, seconds, cap)
              result.update(nodes=count, mode=label, cap=cap,
                            load_before=load,
                            load_average_before=os.getloadavg()[0])
              print(json.dumps(result), file=sys.stderr)
              rows.append(result)
  finally:
    workspace.Close()
  return rows


def Table(rows, modes):
  """The results as a Markdown table, with ratios to the first mode's
  row."""
  lines = ["| nodes | cap | mode | RPC/s | vs before | call p50 ms |"
           " call p99 ms | master CPU us/RPC | vs before |",
           "|---:|---|---|---:|---:|---:|---:|---:|---:|"]
  order = [MODES[name][0] for name in modes]
  rows = sorted(rows, key=lambda r: (r["nodes"], r["cap"],
                                     order.index(r["mode"])))
  base = {}
  for row in rows:
    rate = row["rpcs"] / row["seconds"]
    key = (row["nodes"], row["cap"])
    if row["mode"] == order[0]:
      base[key] = (rate, row["cpu_us_per_rpc"])
    (base_rate, base_cpu) = base.get(key, (rate, row["cpu_us_per_rpc"]))
    lines.append("| %d | %s | %s | %.0f | %.2fx | %.1f | %.1f | %.0f |"
                 " %.2f |%s" % (
                   row["nodes"], row["cap"], row["mode"], rate,
                   rate / base_rate, row["call_p50_ms"], row["call_p99_ms"],
                   row["cpu_us_per_rpc"], row["cpu_us_per_rpc"] / base_cpu,
                   " errors: %s" % row["errors"] if row["errors"] else ""))
  return "\n".join(lines) + "\n"


def main(argv=None):
  """Measure and print the table."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--nodes", default="1,16,64",
                      help="node counts, comma-separated")
  parser.add_argument("--seconds", type=float, default=4,
                      help="measured seconds per row (after 0.5 s warm-up)")
  parser.add_argument("--modes", default=DEFAULT_MODES,
                      help="modes, comma-separated, of: %s" %
                           ", ".join(MODES))
  parser.add_argument("--output", help="also write the table here")
  args = parser.parse_args(argv)
  modes = args.modes.split(",")
  unknown = set(modes) - set(MODES)
  if unknown:
    parser.error("unknown modes: %s" % ", ".join(sorted(unknown)))
  start = time.time()
  rows = Measure([int(n) for n in args.nodes.split(",")], args.seconds,
                 modes)
  table = Table(rows, modes)
  table += ("\nBefore each row, in run order: busy cores %s; load average"
            " %s; %.0f s in all.\n" % (
              ", ".join("%.2f" % row["load_before"] for row in rows),
              ", ".join("%.2f" % row["load_average_before"] for row in rows),
              time.time() - start))
  sys.stdout.write(table)
  if args.output:
    with open(args.output, "w") as handle:
      handle.write(table)


if __name__ == "__main__":
  main()
