"""Benchmark both HTTP backends side by side; write docs/performance.md.

  .venv/bin/python bench/run.py [--seconds N] [--processes P] [--output F]
      [--sections small,streaming] [--large]

Every target serves from its own process (see L{bench.servers}) and all of
them run during the whole bench; ApacheBench loads them in turn, cell by
cell, so drift of the machine hits every target alike.  Targets:

  - the legacy backend (stdlib, threads, one request per connection);
  - the fastcgi backend with 1 (threads only), 2, 3 and 4 backend
    processes;
  - a plain lighttpd serving the handler's answer as a static file: the
    ceiling for anything behind lighttpd.

Each cell also records the CPU time the server and ab spent (see
L{bench.measure}).  The report is a list of L{Section}s, each with its
L{report.Table}s and the cases that fill them (see L{_Sections}); a new
kind of measurement is one more section.

The streamed rows (L{_StreamSection}, L{_FeedbackSection}) run on servers
of their own with the handler of L{bench.streaming}: 1 GiB generated,
from a file and uploaded, with curl and with Ganeti's client, over plain
HTTP, beside lighttpd serving the same file; and the delay of feedback
messages.  C{--large} adds 4 GiB each way (L{_StreamSection} again), for
the peak memory of every process.
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
from bench import streaming
from bench import transfers
from bench import workload
from ganeti.http.backends.fastcgi.lighttpd import (
  supervisor as lighttpd_supervisor)
from tests.pki import ClusterPki

CONCURRENCY = (1, 16, 64)
CONNECTIONS = (("close", False), ("keep-alive", True))
PROCESS_COUNTS = (1, 2, 3, 4)
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

#: Sections run unless told otherwise (C{--sections}).
SECTIONS = ("small", "streaming")

#: Sizes of the streamed rows, of the C{--large} ones, and of the
#: transfers that warm the servers up (see L{_WarmUpStreaming}).
STREAM_SIZE = 1 << 30
LARGE_SIZE = 4 << 30
WARM_UP_SIZE = 256 << 20

#: Transfers per cell of the streamed rows (the median is reported), and
#: of the C{--large} ones.
STREAM_REPEATS = 5
LARGE_REPEATS = 1

#: Clients of the streamed rows: report column and L{transfers} function.
STREAM_CLIENTS = (("curl", transfers.Curl),
                  ("Ganeti's client (pycurl)", transfers.Pycurl))

#: Targets of the streamed rows.
STREAM_TARGETS = {
  # generated stream, fastcgi / legacy, same client (curl)
  "generated": 0.5,
  # file, fastcgi (X-Sendfile) / lighttpd's static file, curl
  "file": 0.8,
}

#: Feedback messages per run, and seconds between them.
FEEDBACK_MESSAGES = 500
FEEDBACK_INTERVAL = 0.005

#: The feedback delay's p99 must stay under this many ms.
FEEDBACK_P99_TARGET_MS = 20

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
    # The streamed rows' files, which lighttpd may send (X-Sendfile)
    self.files_dir = self._Dir("files")
    self.stream_config_path = os.path.join(self.root, "http-streaming.conf")
    with open(self.stream_config_path, "w") as handle:
      handle.write("[fastcgi]\nruntime-dir = %s\nsendfile-dirs = %s\n" %
                   (self.runtime_dir, self.files_dir))

  def StreamFile(self, size, sparse=False):
    """The name of a file of C{size} bytes in L{files_dir}, made if
    missing: the generated pattern, or zeros taking no disk space."""
    name = "%dMiB%s.bin" % (size >> 20, "-sparse" if sparse else "")
    path = os.path.join(self.files_dir, name)
    if not os.path.exists(path):
      if sparse:
        streaming.SparseFile(path, size)
      else:
        streaming.CheckFreeSpace(self.files_dir, size)
        streaming.WriteFile(path, size)
      streaming.WarmPageCache(path)
    return name

  def _Dir(self, name):
    path = os.path.join(self.root, name)
    os.mkdir(path)
    os.chmod(path, 0o755)
    return path

  def LogPath(self, spec, tls, role="small"):
    """Where the server of C{spec} writes its standard error."""
    name = "%s-%s-%s-%s.log" % (role, spec.kind, spec.processes or 0,
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


def _StartStreamingServers(stack, workspace, fastcgi):
  """Servers of the streamed rows: both backends with the handler of
  L{bench.streaming} over HTTP and HTTPS, and lighttpd serving the same
  files over HTTP.

  @return: C{{(label, tls): L{servers.ServerProcess}}}
  """
  started = {}
  handler = ["--streaming", workspace.files_dir]
  for (spec, choices, extra) in ((LEGACY, (False, True), handler),
                                 (fastcgi, (False, True), handler),
                                 (STATIC, (False, ),
                                  ["--docroot", workspace.files_dir])):
    for tls in choices:
      server = servers.ServerProcess(
        spec, workspace.stream_config_path,
        workspace.LogPath(spec, tls, "streaming"),
        tls_pem=workspace.pki.cluster.path if tls else None,
        client_digest=workspace.pki.node.digest, extra_args=extra)
      server.Start()
      stack.callback(server.Stop)
      started[(spec.label, tls)] = server
  return started


def _HttpsConfig(workspace):
  return transfers.HttpsConfig(workspace.pki.cluster.path,
                               workspace.pki.node.path)


def _WarmUpStreaming(started, workspace):
  """Check that every streaming server answers, and bring each to the
  state of a daemon that has served for a while: one upload and one
  download of L{WARM_UP_SIZE} bytes, not measured.

  A fresh legacy daemon page-faults on every 4 KiB of its generated
  streams (about 1 GB/s instead of 3) until it has read a big request
  body, which raises glibc's mmap threshold; see docs/performance.md.

  @raise SystemExit: a server does not answer properly
  """
  name = workspace.StreamFile(WARM_UP_SIZE, sparse=True)
  path = os.path.join(workspace.files_dir, name)
  for ((label, tls), server) in sorted(started.items()):
    if tls:
      errors = [transfers.FeedbackDelays(server.url_base, 2, 0,
                                         _HttpsConfig(workspace)).error]
    elif server.spec.kind == "static":
      errors = [transfers.Curl("%s/%s" % (server.url_base, name),
                               WARM_UP_SIZE).error]
    else:
      errors = [
        transfers.Curl(server.url_base + streaming.UPLOAD_PATH, WARM_UP_SIZE,
                       upload_path=path).error,
        transfers.Curl("%s%s?bytes=%d" % (server.url_base,
                                          streaming.STREAM_PATH,
                                          WARM_UP_SIZE), WARM_UP_SIZE).error,
      ]
    for error in errors:
      if error:
        raise SystemExit("%s (%s) does not answer the streaming requests"
                         " properly: %s" % (label, server.url_base, error))


#: Kinds of streamed rows: report label and the targets that have them.
_STREAM_KINDS = (
  ("generated", "generated stream (GET)", ("legacy", "fastcgi")),
  ("file", "file (GET)", ("legacy", "fastcgi", "static")),
  ("upload", "upload (PUT)", ("legacy", "fastcgi")),
)


def _StreamRow(spec, kind):
  """The report row of C{spec}'s transfers of C{kind}."""
  if spec.kind == "static":
    return "%s (GET), the ceiling" % spec.label
  label = dict((name, text) for (name, text, _) in _STREAM_KINDS)[kind]
  if kind == "file" and spec.kind == "fastcgi":
    label = "file via X-Sendfile (GET)"
  return "%s: %s" % (spec.label, label)


def _SizeText(size):
  return "%d GiB" % (size >> 30)


def _StreamTables(size, repeats):
  """The throughput, peak RSS and CPU tables of C{size}-byte transfers."""
  subject = "Streamed bodies, HTTP, %s" % _SizeText(size)
  columns = [name for (name, _) in STREAM_CLIENTS]
  throughput = report.Table(
    "%s: throughput" % subject,
    "Cells: GB/s (10^9 bytes per second) of a transfer, from the"
    " client's start of the request to its end, connection set-up"
    " included%s.  Generated: a generator yielding a preallocated 1 MiB"
    " block (chunked, no Content-Length).  File: the handler returns"
    " open(path) on a file in the page cache, lighttpd's sendfile-dirs on"
    " the fastcgi backend.  Upload: PUT with Content-Length of the same"
    " file, read by a STREAM_REQUEST_BODY handler in 1 MiB reads and"
    " thrown away (not hashed)." % (
      "; the median of %d in a row, with their range" % repeats
      if repeats > 1 else ""),
    "Target: transfer", columns, view=report.Bandwidth)
  rss = report.Table(
    "%s: peak RSS of every process" % subject,
    "Cells: peak RSS (VmHWM) in MiB during the transfers, of each process"
    " that moves the data: the daemon, the FastCGI worker (the biggest),"
    " lighttpd, then the client.  The servers' peaks are reset"
    " (/proc/PID/clear_refs) before each transfer; the client's comes"
    " from GNU time.",
    "Target: transfer", columns, view=report.PeakRss)
  cpu = report.Table(
    "%s: CPU seconds per GiB" % subject,
    "Cells: CPU seconds per GiB moved, same transfers: all of the"
    " server's processes (for the fastcgi backend split into its Python"
    " processes and lighttpd), then the client's.",
    "Target: transfer", columns, view=report.CpuPerGib)
  return (throughput, rss, cpu)


def _TransferRun(server, workspace, kind, size, file_name, client_fn,
                 repeats):
  """The C{run()} of one transfer case: C{repeats} transfers."""
  upload = None
  if kind == "generated":
    url = "%s%s?bytes=%d" % (server.url_base, streaming.STREAM_PATH, size)
  elif kind == "file" and server.spec.kind == "static":
    url = "%s/%s" % (server.url_base, file_name)
  elif kind == "file":
    url = "%s%s/%s" % (server.url_base, streaming.FILE_PATH, file_name)
  else:
    url = server.url_base + streaming.UPLOAD_PATH
    upload = os.path.join(workspace.files_dir, file_name)
  roles = (("lighttpd", ) if server.spec.kind == "static"
           else transfers.ROLES)
  return lambda: measure.Measure(
    server.pid, lambda: transfers.Transfer(
      server.pid, lambda: client_fn(url, size, upload_path=upload), roles,
      repeats))


def _StreamSection(name, size, sparse, repeats, specs, started, workspace):
  """1 GiB (or C{--large}: 4 GiB) generated, from a file and uploaded,
  with each client, against each backend and lighttpd's static file;
  targets take turns cell by cell.

  @param sparse: use a sparse file (zeros, no disk space) as the file
  @param repeats: transfers per cell
  """
  file_name = workspace.StreamFile(size, sparse=sparse)
  tables = _StreamTables(size, repeats)
  for (kind, _, kinds) in _STREAM_KINDS:
    for spec in specs:
      if spec.kind in kinds:
        for table in tables:
          table.rows.append(_StreamRow(spec, kind))
  cases = []
  for (column, client_fn) in STREAM_CLIENTS:
    for (kind, _, kinds) in _STREAM_KINDS:
      for spec in specs:
        if spec.kind not in kinds:
          continue
        server = started[(spec.label, False)]
        cases.append(Case(list(tables), _StreamRow(spec, kind), column,
                          _TransferRun(server, workspace, kind, size,
                                       file_name, client_fn, repeats)))
  return Section(name, list(tables), cases)


def _FeedbackRow(spec, tls):
  return "%s, %s" % (spec.label,
                     "HTTPS (client certificate)" if tls else "HTTP")


_FEEDBACK_COLUMN = "p50 / p99 / max, ms"


def _FeedbackSection(specs, started, workspace):
  """The delay from a feedback message's yield to its feedback_fn call."""
  table = report.Table(
    "Feedback delay",
    "Ganeti's client (pycurl, in the bench's process) asks for a feedback"
    " stream with a feedback_fn; the handler (RespondWithFeedback) yields"
    " %d messages %g ms apart, each carrying time.monotonic() of its"
    " yield (CLOCK_MONOTONIC, one clock for all processes); a delay is"
    " the time from the yield to the feedback_fn call for it.  Target:"
    " p99 under %d ms." % (FEEDBACK_MESSAGES, FEEDBACK_INTERVAL * 1e3,
                           FEEDBACK_P99_TARGET_MS),
    "Target, transport", [_FEEDBACK_COLUMN], view=report.Latency)
  cases = []
  for tls in (False, True):
    for spec in specs:
      if spec.kind == "static":
        continue
      server = started[(spec.label, tls)]
      config = _HttpsConfig(workspace) if tls else None
      table.rows.append(_FeedbackRow(spec, tls))
      cases.append(Case([table], _FeedbackRow(spec, tls), _FEEDBACK_COLUMN,
                        _FeedbackRun(server, config)))
  table.rows.sort(key=lambda row: not row.startswith(LEGACY.label))
  return Section("feedback", [table], cases)


def _FeedbackRun(server, config):
  return lambda: measure.Measure(
    server.pid, lambda: transfers.FeedbackDelays(
      server.url_base, FEEDBACK_MESSAGES, FEEDBACK_INTERVAL, config))


@dataclasses.dataclass
class Section(object):
  """Tables of one kind of measurement and the cases that fill them."""
  name: str
  tables: List[report.Table]
  cases: List[Case]


def _Sections(args, specs, started, streaming_started, workspace):
  """Every load section of the bench, in report order."""
  if "small" in args.sections:
    for (transport, tls) in (("HTTP", False), ("HTTPS", True)):
      (tables, cases) = _SmallRequestSection(transport, tls, specs, started,
                                             workspace, args.seconds)
      yield Section(transport, tables, cases)
  stream_specs = [LEGACY, FastCgi(args.processes), STATIC]
  if "streaming" in args.sections:
    yield _StreamSection("streaming", STREAM_SIZE, False, STREAM_REPEATS,
                         stream_specs, streaming_started, workspace)
    yield _FeedbackSection(stream_specs, streaming_started, workspace)
  if args.large:
    yield _StreamSection("large", LARGE_SIZE, True, LARGE_REPEATS,
                         stream_specs, streaming_started, workspace)


def _Verdict(met):
  return "met" if met else "MISSED"


def _StreamRatio(throughput, numerator, denominator, target):
  """C{(measured text, verdict)} of two rows' curl throughputs."""
  column = STREAM_CLIENTS[0][0]
  (top, bottom) = (throughput.Get(numerator, column),
                   throughput.Get(denominator, column))
  if top is None or bottom is None:
    return None
  if top.ab.error or bottom.ab.error or not bottom.ab.gbps:
    return ("a transfer failed", _Verdict(False))
  ratio = top.ab.gbps / bottom.ab.gbps
  return ("%.2f× (%.2f / %.2f GB/s)" % (ratio, top.ab.gbps, bottom.ab.gbps),
          _Verdict(ratio >= target))


def _LargestRss(tables, spec):
  """C{(measured text, verdict)}: the largest peak RSS of any process in
  C{spec}'s rows of the peak RSS table of C{tables}."""
  rss = tables[1]
  largest = (0, None)
  failed = False
  for (kind, _, kinds) in _STREAM_KINDS:
    if spec.kind not in kinds:
      continue
    for column in rss.columns:
      cell = rss.Get(_StreamRow(spec, kind), column)
      if cell is None:
        continue
      failed = failed or bool(cell.ab.error)
      for (name, kib) in cell.ab.PeakRss():
        if largest[1] is None or kib > largest[0]:
          largest = (kib, "%s, %s" % (name, _StreamRow(spec, kind)))
  if largest[1] is None:
    return None
  text = "largest %.0f MiB (%s)" % (largest[0] / 1024.0, largest[1])
  if failed:
    text += "; a transfer FAILED"
  return (text, _Verdict(not failed and
                         largest[0] < report.RSS_LIMIT_MIB * 1024))


def _StreamTargetTable(sections, fastcgi):
  """The streamed rows' targets, measured side by side in this run."""
  table = report.Table(
    "Targets of the streamed rows",
    "Throughput ratios use curl's transfers of the same run; every"
    " process's peak RSS covers both clients and every transfer of the"
    " target.",
    "Target", ["Measured", "Verdict"])

  def _Put(row, outcome):
    if outcome is not None:
      table.Put(row, "Measured", outcome[0])
      table.Put(row, "Verdict", outcome[1])

  for section in sections:
    if section.name in ("streaming", "large"):
      size = _SizeText(STREAM_SIZE if section.name == "streaming"
                       else LARGE_SIZE)
      throughput = section.tables[0]
    if section.name == "streaming":
      _Put("%s generated stream: %s ≥ %g × legacy" %
           (size, fastcgi.label, STREAM_TARGETS["generated"]),
           _StreamRatio(throughput, _StreamRow(fastcgi, "generated"),
                        _StreamRow(LEGACY, "generated"),
                        STREAM_TARGETS["generated"]))
      _Put("%s file: %s (X-Sendfile) ≥ %g × lighttpd's static file" %
           (size, fastcgi.label, STREAM_TARGETS["file"]),
           _StreamRatio(throughput, _StreamRow(fastcgi, "file"),
                        _StreamRow(STATIC, "file"), STREAM_TARGETS["file"]))
    if section.name == "feedback":
      for row in section.tables[0].rows:
        cell = section.tables[0].Get(row, _FEEDBACK_COLUMN)
        if cell is None:
          continue
        p99 = cell.ab.p99
        _Put("Feedback delay p99 < %d ms: %s" % (FEEDBACK_P99_TARGET_MS, row),
             ("FAILED", _Verdict(False)) if cell.ab.error else
             ("%.2f ms" % p99, _Verdict(p99 < FEEDBACK_P99_TARGET_MS)))
    if section.name == "large":
      for spec in (LEGACY, fastcgi):
        _Put("%s each way through %s: every process < %d MiB" %
             (size, spec.label, report.RSS_LIMIT_MIB),
             _LargestRss(section.tables, spec))
  return table


def _LegacyRatio(throughput, spec, connection, column, target):
  """The L{report.RatioCell} of C{spec} over the legacy backend in one
  cell of a throughput table, or None."""
  return report.Ratio(throughput.Get(_Row(spec, connection), column),
                      throughput.Get(_Row(LEGACY, connection), column),
                      target)


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
        ratio = _LegacyRatio(throughput, fastcgi, connection, column, target)
        if ratio is not None:
          table.Put("%s, %s" % (section.name, connection), column, ratio)
  return table


def _RatioByProcessesTable(sections):
  """fastcgi/legacy at the targets' concurrency for every process count."""
  columns = ["%s, %s" % (transport, connection)
             for (transport, connection) in TARGETS]
  table = report.Table(
    "Ratios at %d clients, every process count" % TARGET_CONCURRENCY,
    "As above, one row per FastCGI process count (the verdicts above use"
    " the count chosen with --processes before the run).",
    "Target", columns)
  column = _Column(TARGET_CONCURRENCY)
  for section in sections:
    throughput = section.tables[0]
    for (transport, connection) in TARGETS:
      if transport != section.name:
        continue
      for count in PROCESS_COUNTS:
        fastcgi = FastCgi(count)
        ratio = _LegacyRatio(throughput, fastcgi, connection, column,
                             TARGETS[(transport, connection)])
        if ratio is not None:
          table.Put(fastcgi.label, "%s, %s" % (transport, connection), ratio)
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


def _MachineFacts(code_version, sections):
  """Lines describing the machine and the software measured."""
  lighttpd = _CommandOutput([lighttpd_supervisor.FindLighttpd(), "-v"])
  facts = [
    "Code measured: %s" % code_version,
    "CPU: %d cores (%s)" % (os.cpu_count(), _CpuModel()),
    "Kernel: %s %s" % (platform.system(), platform.release()),
    "lighttpd: %s" % lighttpd.splitlines()[0],
    "Python: %s (%s)" % (platform.python_version(), ssl.OPENSSL_VERSION),
  ]
  if "small" in sections:
    facts.append("Load generator: %s (-r -s 30 -t N, -k for keep-alive),"
                 " on the same machine, over loopback" % loadgen.Version())
  if "streaming" in sections:
    curl = _CommandOutput(["curl", "--version"]).splitlines()[0]
    facts.append("Streamed rows: %s; Ganeti's client with %s; each in a"
                 " process of its own, on the same machine, over loopback;"
                 " the servers' runtime directory (lighttpd's temporary"
                 " files) and the files on %s" %
                 (" ".join(curl.split()[:2]), transfers.PycurlVersion(),
                  _FileSystem(tempfile.gettempdir())))
  return facts


def _FileSystem(path):
  """The type of the file system holding C{path}, e.g. "ext4"."""
  found = ("", "unknown")
  real = os.path.realpath(path)
  with open("/proc/mounts") as handle:
    for line in handle:
      fields = line.split()
      mount = fields[1]
      if ((real == mount or real.startswith(mount.rstrip("/") + "/"))
          and len(mount) >= len(found[0])):
        found = (mount, fields[2])
  return found[1]


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


def _Generated(argv, facts, tables, fastcgi, started_at, elapsed, noise,
               sections):
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
  lines.append("- Ratios and streamed rows use the fastcgi backend with %s%s."
               % (fastcgi.label.split(", ", 1)[1],
                  "; the other process counts are in the tables"
                  if "small" in sections else ""))
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
  parser.add_argument("--output",
                      help="the Markdown report, relative to the repository"
                           " (default: %s when every section runs, else"
                           " none); '-' for none" % DEFAULT_OUTPUT)
  parser.add_argument("--sections", default=",".join(SECTIONS),
                      help="comma-separated sections to run, of %s"
                           " (default: all)" % ", ".join(SECTIONS))
  parser.add_argument("--large", action="store_true",
                      help="also move %s each way through each backend,"
                           " for every process's peak memory (some"
                           " minutes more)" % _SizeText(LARGE_SIZE))
  args = parser.parse_args(argv)
  args.sections = [name.strip() for name in args.sections.split(",")
                   if name.strip()]
  unknown = set(args.sections) - set(SECTIONS)
  if unknown:
    parser.error("unknown sections: %s" % ", ".join(sorted(unknown)))
  if args.output is None:
    args.output = (DEFAULT_OUTPUT if set(args.sections) == set(SECTIONS)
                   else "-")
  return args


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


def _RunLoad(workspace, specs, args):
  """Start every server, run every load section, stop the servers.

  @return: C{(sections, results, number of server processes checked)}
  @raise SystemExit: a server process outlived its stop
  """
  with contextlib.ExitStack() as stack:
    started = {}
    streaming_started = {}
    if "small" in args.sections:
      started = _StartServers(stack, workspace, specs)
    if "streaming" in args.sections or args.large:
      streaming_started = _StartStreamingServers(stack, workspace,
                                                 FastCgi(args.processes))
    descendants = procs.Descendants(
      [server.pid for server in list(started.values()) +
       list(streaming_started.values())])
    for server in started.values():
      _CheckAnswer(server, workspace)
    _WarmUpStreaming(streaming_started, workspace)
    sections = list(_Sections(args, specs, started, streaming_started,
                              workspace))
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
  if "small" in args.sections:
    loadgen.FindAb()
  if "streaming" in args.sections or args.large:
    transfers.FindTools()
  started_at = datetime.datetime.now(datetime.timezone.utc)
  start = time.monotonic()
  code_version = _CodeVersion()  # before anyone can change it
  # Measured first, while no server runs.
  layer_tables = []
  if "small" in args.sections:
    (layer_tables, _) = _LayerSection()
  specs = [LEGACY] + [FastCgi(count) for count in PROCESS_COUNTS] + [STATIC]
  workspace = Workspace()
  failed = True
  try:
    (sections, results, checked) = _RunLoad(workspace, specs, args)
    failed = False
  finally:
    workspace.Close(keep_logs=failed)
  fastcgi = FastCgi(args.processes)
  tables = [table for section in sections for table in section.tables]
  if "small" in args.sections:
    tables.append(_RatioTable(sections, fastcgi))
    tables.append(_RatioByProcessesTable(sections))
  if "streaming" in args.sections or args.large:
    tables.append(_StreamTargetTable(sections, fastcgi))
  tables.extend(layer_tables)
  noise = _NoiseNote(results)
  print("\n\n".join(table.Text() for table in tables))
  print("\n%s\nNo server process left behind (%d checked)." % (noise,
                                                               checked))
  if args.output != "-":
    generated = _Generated(argv, _MachineFacts(code_version, args.sections),
                           tables, fastcgi, started_at,
                           time.monotonic() - start, noise, args.sections)
    report.WriteDocument(os.path.join(REPO, args.output), generated,
                         PREAMBLE)
    print("Wrote %s" % args.output)


if __name__ == "__main__":
  main()
