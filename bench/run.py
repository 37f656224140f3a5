"""Benchmark both HTTP backends side by side; write docs/performance.md.

  .venv/bin/python bench/run.py [--seconds N] [--processes P] [--output F]

Every target serves from its own process (see L{bench.servers}) and all of
them run during the whole bench; ApacheBench loads them in turn, cell by
cell, so drift of the machine hits every target alike.  Targets:

  - the legacy backend (stdlib, threads, one request per connection);
  - the fastcgi backend with 1 (threads only), 2 and 3 backend processes;
  - a plain lighttpd serving the handler's answer as a static file: the
    ceiling for anything behind lighttpd.

Each cell also records the CPU time the server and ab spent (see
L{bench.measure}).  The report is a list of L{Section}s, each with its
L{report.Table}s and the cases that fill them (see L{_Sections}); a new
kind of measurement (say streamed bodies) is one more section.
"""

import argparse
import contextlib
import dataclasses
import datetime
import os
import platform
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from typing import Callable, List

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# pylint: disable=wrong-import-position
from bench import breakdown
from bench import loadgen
from bench import measure
from bench import procs
from bench import report
from bench import servers
from bench import workload
from ganeti.http import lighttpd_supervisor
from tests.pki import ClusterPki

CONCURRENCY = (1, 16, 64)
CONNECTIONS = (("close", False), ("keep-alive", True))
PROCESS_COUNTS = (1, 2, 3)
DEFAULT_PROCESSES = 2
DEFAULT_OUTPUT = os.path.join("docs", "performance.md")

#: Ratios fastcgi/legacy required at 16 clients, by (transport, connection).
TARGETS = {
  ("HTTP", "close"): 3,
  ("HTTP", "keep-alive"): 3,
  ("HTTPS", "close"): 2,
  ("HTTPS", "keep-alive"): 10,
}
TARGET_CONCURRENCY = 16

LEGACY = servers.TargetSpec("legacy", "legacy")
STATIC = servers.TargetSpec("lighttpd static file", "static")


def FastCgi(processes):
  """The spec of the fastcgi backend with C{processes} processes."""
  if processes == 1:
    return servers.TargetSpec("fastcgi, 1 process (threads)", "fastcgi", 1)
  return servers.TargetSpec("fastcgi, %d processes" % processes, "fastcgi",
                            processes)


@dataclasses.dataclass
class Case(object):
  """One measurement: how to get it and the tables it goes into (each
  showing it its own way, at the same row and column)."""
  tables: List[report.Table]
  row: str
  column: str
  run: Callable[[], object]


class Workspace(object):
  """Temporary files of one bench run: certificates, body, settings, logs.

  Everything lives in one directory, readable by lighttpd's frontend user,
  removed by L{Close}.
  """

  def __init__(self):
    self.root = tempfile.mkdtemp(prefix="ganeti-http-bench-")
    os.chmod(self.root, 0o755)
    pki_dir = self._Dir("pki")
    self.pki = ClusterPki(pki_dir)
    self.runtime_dir = self._Dir("run")
    self.logs_dir = self._Dir("logs")
    self.body_path = os.path.join(self.root, "body.json")
    with open(self.body_path, "wb") as handle:
      handle.write(workload.REQUEST_BODY)
    self.config_path = os.path.join(self.root, "http-backend.conf")
    with open(self.config_path, "w") as handle:
      handle.write("[fastcgi]\nruntime-dir = %s\n" % self.runtime_dir)

  def _Dir(self, name):
    path = os.path.join(self.root, name)
    os.mkdir(path)
    os.chmod(path, 0o755)
    return path

  def LogPath(self, spec, tls):
    """Where the server of C{spec} writes its standard error."""
    name = "%s-%s-%s.log" % (spec.kind, spec.processes or 0,
                             "https" if tls else "http")
    return os.path.join(self.logs_dir, name)

  def Close(self, keep_logs=False):
    """Remove the directory (or only what is not a log)."""
    if keep_logs:
      print("Server logs kept in %s" % self.logs_dir, file=sys.stderr)
      return
    shutil.rmtree(self.root, ignore_errors=True)


def _StartServers(stack, workspace, specs):
  """Start every spec over HTTP and over HTTPS.

  @return: C{{(label, tls): L{servers.ServerProcess}}}
  """
  started = {}
  for tls in (False, True):
    for spec in specs:
      server = servers.ServerProcess(
        spec, workspace.config_path, workspace.LogPath(spec, tls),
        tls_pem=workspace.pki.cluster.path if tls else None,
        client_digest=workspace.pki.node.digest)
      server.Start()
      stack.callback(server.Stop)
      started[(spec.label, tls)] = server
  return started


def _Load(server, workspace, concurrency, keepalive, seconds=None,
          requests=None):
  """ab against C{server}: the JSON POST, or a GET of the static file."""
  static = server.spec.kind == "static"
  return loadgen.Run(
    server.url_base + workload.PATH, concurrency, keepalive, seconds=seconds,
    requests=requests, post_file=None if static else workspace.body_path,
    content_type=workload.CONTENT_TYPE,
    client_cert=workspace.pki.node.path if server.tls else None)


def _CheckAnswer(server, workspace):
  """Fail unless the server answers the bench request with 2xx."""
  result = _Load(server, workspace, 1, False, requests=5)
  if result.errors or result.complete != 5:
    raise SystemExit("%s (%s) does not answer the bench request properly:"
                     " %s" % (server.spec.label, server.url_base, result))


def _Column(concurrency):
  return "%d client%s" % (concurrency, "" if concurrency == 1 else "s")


def _Columns():
  return [_Column(concurrency) for concurrency in CONCURRENCY]


def _SmallRequestTables(transport, tls, seconds):
  """The throughput table and the CPU table of one transport."""
  subject = ("%s, small JSON POST (%d-byte request, %d-byte response)" %
             (transport, len(workload.REQUEST_BODY),
              len(workload.RESPONSE_BODY)))
  client_cert = (" The client presents the node certificate; every server"
                 " requires it (ssl_verify_peer)." if tls else "")
  throughput = report.Table(
    subject,
    "Cells: requests/s (p50/p99 latency in ms, connection set-up included)"
    " with N concurrent clients, %d s per cell.%s" % (seconds, client_cert),
    "Target, client connection", _Columns(), view=report.Throughput)
  cpu = report.Table(
    "%s: CPU time per request" % subject,
    "Cells: CPU microseconds per request, same runs: all of the server's"
    " processes (for the fastcgi backend split into its Python processes"
    " and lighttpd), then the load generator's.",
    "Target, client connection", _Columns(), view=report.CpuCost)
  return (throughput, cpu)


def _SmallRequestSection(transport, tls, specs, started, workspace, seconds):
  """The tables of small JSON requests over C{transport}, and their cases."""
  tables = _SmallRequestTables(transport, tls, seconds)
  for spec in specs:
    for (connection, _) in CONNECTIONS:
      for table in tables:
        table.rows.append(_Row(spec, connection))
  cases = []
  for (connection, keepalive) in CONNECTIONS:
    for concurrency in CONCURRENCY:
      for spec in specs:
        server = started[(spec.label, tls)]
        cases.append(Case(
          list(tables), _Row(spec, connection), _Column(concurrency),
          _Measure(server, workspace, concurrency, keepalive, seconds)))
  return (tables, cases)


def _Row(spec, connection):
  return "%s, %s" % (spec.label, connection)


def _Measure(server, workspace, concurrency, keepalive, seconds):
  return lambda: measure.Measure(
    server.pid, lambda: _Load(server, workspace, concurrency, keepalive,
                              seconds=seconds))


def _LayerSection():
  """The Python cost of each layer, measured without load (see
  L{bench.breakdown}); a section without cases."""
  table = report.Table(
    "Python CPU time per request, layer by layer",
    "One thread, no lighttpd, no load generator: the cost of the Python"
    " code alone (bench/breakdown.py).  Each line includes the lines above"
    " it, up to the legacy line.",
    "Layer", ["µs per request"])
  for (layer, seconds) in breakdown.Layers():
    table.Put(layer, "µs per request", "%.0f" % (seconds * 1e6))
  return ([table], [])


@dataclasses.dataclass
class Section(object):
  """Tables of one kind of measurement and the cases that fill them."""
  name: str
  tables: List[report.Table]
  cases: List[Case]


def _Sections(specs, started, workspace, seconds):
  """Every load section of the bench, in report order."""
  for (transport, tls) in (("HTTP", False), ("HTTPS", True)):
    (tables, cases) = _SmallRequestSection(transport, tls, specs, started,
                                           workspace, seconds)
    yield Section(transport, tables, cases)


def _RatioTable(sections, fastcgi):
  """fastcgi/legacy throughput for each transport and connection."""
  table = report.Table(
    "Ratios: %s / legacy" % fastcgi.label,
    "Requests/s of the fastcgi backend divided by the legacy backend's,"
    " same run, same cell; the targets apply at %d clients." %
    TARGET_CONCURRENCY,
    "Transport, client connection", _Columns())
  for section in sections:
    if (section.name, "close") not in TARGETS:
      continue
    throughput = section.tables[0]
    for (connection, _) in CONNECTIONS:
      for (concurrency, column) in zip(CONCURRENCY, _Columns()):
        target = (TARGETS[(section.name, connection)]
                  if concurrency == TARGET_CONCURRENCY else None)
        ratio = report.Ratio(throughput.Get(_Row(fastcgi, connection), column),
                             throughput.Get(_Row(LEGACY, connection), column),
                             target)
        if ratio is not None:
          table.Put("%s, %s" % (section.name, connection), column, ratio)
  return table


def _CommandOutput(command):
  try:
    return subprocess.run(command, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, check=False
                          ).stdout.decode().strip()
  except OSError:
    return "unknown"


def _CpuModel():
  with open("/proc/cpuinfo") as handle:
    for line in handle:
      if line.startswith("model name"):
        return line.split(":", 1)[1].strip()
  return platform.processor() or "unknown"


def _CodeVersion():
  """The commit measured, and whether the package had local changes."""
  commit = _CommandOutput(["git", "-C", REPO, "rev-parse", "--short",
                           "HEAD"])
  changed = _CommandOutput(["git", "-C", REPO, "status", "--porcelain",
                            "--", "ganeti"])
  return "commit %s%s" % (commit, " with uncommitted changes under ganeti/"
                          if changed else "")


def _MachineFacts(code_version):
  """Lines describing the machine and the software measured."""
  lighttpd = _CommandOutput([lighttpd_supervisor.FindLighttpd(), "-v"])
  return [
    "Code measured: %s" % code_version,
    "CPU: %d cores (%s)" % (os.cpu_count(), _CpuModel()),
    "Kernel: %s %s" % (platform.system(), platform.release()),
    "lighttpd: %s" % lighttpd.splitlines()[0],
    "Python: %s (%s)" % (platform.python_version(), ssl.OPENSSL_VERSION),
    "Load generator: %s (-r -s 30 -t N, -k for keep-alive), on the same"
    " machine, over loopback" % loadgen.Version(),
  ]


def _NoiseNote(measurements):
  """A sentence on how busy the machine was besides the bench."""
  retried = sum(1 for item in measurements if item.tries > 1)
  busy = sum(1 for item in measurements
             if item.background_cores > measure.QUIET_CORES)
  worst = max((item.background_cores for item in measurements), default=0)
  return ("Background load (CPU used by anything but the server under test"
          " and ab): at most %.2f cores; %d of %d cells were re-run because"
          " it exceeded %.2f cores (quietest of %d runs kept), %d still"
          " exceed it (marked \"busy machine\")." %
          (worst, retried, len(measurements), measure.QUIET_CORES,
           measure.TRIES, busy))


def _Generated(argv, facts, tables, fastcgi, started_at, elapsed, noise):
  lines = [
    "## Results of the last run",
    "",
    "Produced by `.venv/bin/python bench/run.py%s` (what `make bench` runs)"
    " on %s, in %.0f s." % ("".join(" " + arg for arg in argv),
                             started_at.strftime("%Y-%m-%d %H:%M UTC"),
                             elapsed),
    "",
  ]
  lines.extend("- %s" % fact for fact in facts)
  lines.append("- Every server runs in its own process, all of them during"
               " the whole run, with Ganeti's default max_clients=20;"
               " targets take turns cell by cell.")
  lines.append("- Ratios use the fastcgi backend with %s; the other process"
               " counts are in the tables." % fastcgi.label.split(", ", 1)[1])
  lines.append("- %s" % noise)
  for table in tables:
    lines.extend(["", table.Markdown()])
  return "\n".join(lines)


PREAMBLE = """# Performance

`make bench` measures both HTTP backends with the same handler.

"""


def _ParseArgs(argv):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--seconds", type=int, default=4,
                      help="length of each measurement (default: %(default)s)")
  parser.add_argument("--processes", type=int, default=DEFAULT_PROCESSES,
                      choices=PROCESS_COUNTS,
                      help="FastCGI processes of the fastcgi backend the"
                           " ratios use (default: %(default)s)")
  parser.add_argument("--output", default=DEFAULT_OUTPUT,
                      help="the Markdown report, relative to the repository"
                           " (default: %(default)s); '-' for none")
  return parser.parse_args(argv)


def _RunCases(cases):
  """Run every case, file its result, show progress; return the results."""
  results = []
  for (number, case) in enumerate(cases, 1):
    result = case.run()
    results.append(result)
    for table in case.tables:
      table.Put(case.row, case.column, result)
    print("[%d/%d] %s | %s: %s" % (number, len(cases), case.row, case.column,
                                   " | ".join(table.view(result)
                                              for table in case.tables)),
          file=sys.stderr, flush=True)
  return results


def _RunLoad(workspace, specs, seconds):
  """Start every server, run every load section, stop the servers.

  @return: C{(sections, results, number of server processes checked)}
  @raise SystemExit: a server process outlived its stop
  """
  with contextlib.ExitStack() as stack:
    started = _StartServers(stack, workspace, specs)
    descendants = procs.Descendants([server.pid
                                     for server in started.values()])
    for server in started.values():
      _CheckAnswer(server, workspace)
    sections = list(_Sections(specs, started, workspace, seconds))
    results = _RunCases([case for section in sections
                         for case in section.cases])
  leftovers = procs.Alive(descendants) + procs.Mentioning(workspace.root)
  if leftovers:
    raise SystemExit("Processes left behind: %s" % leftovers)
  return (sections, results, len(descendants))


def main(argv=None):
  """Run the bench, print the tables, write the report."""
  argv = sys.argv[1:] if argv is None else argv
  args = _ParseArgs(argv)
  loadgen.FindAb()
  started_at = datetime.datetime.now(datetime.timezone.utc)
  start = time.monotonic()
  code_version = _CodeVersion()  # before anyone can change it
  # Measured first, while no server runs.
  (layer_tables, _) = _LayerSection()
  specs = [LEGACY] + [FastCgi(count) for count in PROCESS_COUNTS] + [STATIC]
  workspace = Workspace()
  failed = True
  try:
    (sections, results, checked) = _RunLoad(workspace, specs, args.seconds)
    failed = False
  finally:
    workspace.Close(keep_logs=failed)
  fastcgi = FastCgi(args.processes)
  tables = [table for section in sections for table in section.tables]
  tables.append(_RatioTable(sections, fastcgi))
  tables.extend(layer_tables)
  noise = _NoiseNote(results)
  print("\n\n".join(table.Text() for table in tables))
  print("\n%s\nNo server process left behind (%d checked)." % (noise,
                                                               checked))
  if args.output != "-":
    generated = _Generated(argv, _MachineFacts(code_version), tables, fastcgi,
                           started_at, time.monotonic() - start, noise)
    report.WriteDocument(os.path.join(REPO, args.output), generated,
                         PREAMBLE)
    print("Wrote %s" % args.output)


if __name__ == "__main__":
  main()
