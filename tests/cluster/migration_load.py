"""The load of the rolling migration and its table, seen from the machine.

L{Load} copies C{load_driver.py} into the nodes and starts one process per
mode (the job loop and Ganeti's RPC client on the master, the probes of
every daemon's port from the master, a RAPI client on another node towards
the cluster's master IP), reads the lines they write, and stops them.
L{Summarize} turns those lines into one table row per step.
"""

import json
import os
import re
import signal
import subprocess
import threading
import time

from tests.cluster import node as node_module

DRIVER_PATH = "/root/load_driver.py"
_DRIVER_SOURCE = os.path.join(os.path.dirname(__file__), "load_driver.py")


class Load(object):
  """The driver processes of one run; L{Stop} ends them (and L{events}
  then holds every line they wrote, as dicts)."""

  def __init__(self):
    self.events = []
    self._lock = threading.Lock()
    self._processes = []
    self._readers = []

  def Start(self, node, *arguments):
    """Start C{load_driver.py ARGUMENTS} inside C{node}."""
    node.CopyFile(_DRIVER_SOURCE, DRIVER_PATH)
    argv = ["nsenter", "--target", str(node.init_pid), "--net", "--uts",
            "--mount", "--pid", "--root", "--wd", "--", "/usr/bin/env", "-i"]
    argv += ["%s=%s" % item for item in sorted(node_module.NODE_ENV.items())]
    argv += ["/usr/bin/python3", DRIVER_PATH] + list(arguments)
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               universal_newlines=True)
    self._processes.append((arguments[0], process))
    reader = threading.Thread(target=self._Read, args=(arguments[0], process),
                              daemon=True)
    reader.start()
    self._readers.append(reader)

  def _Read(self, mode, process):
    for line in process.stdout:
      try:
        event = json.loads(line)
      except ValueError:
        event = {"t": time.time(), "kind": "driver", "op": mode, "ok": False,
                 "detail": line.strip()}
      with self._lock:
        self.events.append(event)

  def Dead(self):
    """The modes whose process ended (with its error output)."""
    return ["%s: exit %d: %s" % (mode, process.returncode,
                                 process.stderr.read()[-500:])
            for (mode, process) in self._processes
            if process.poll() is not None]

  def Stop(self, timeout=120):
    """SIGTERM every driver (each ends its current operation), wait."""
    for (_, process) in self._processes:
      for pid in _Children(process.pid):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for (_, process) in self._processes:
      try:
        process.wait(max(1, deadline - time.monotonic()))
      except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for reader in self._readers:
      reader.join(10)
    for (_, process) in self._processes:
      process.stdout.close()
      process.stderr.close()
    self._processes = []


#: What a client sees when the daemon it talks to restarts: refused (no
#: listening socket), reset (a connection queued on the listening socket
#: when the old process closed it, or a kept-alive connection to the old
#: process), broken pipe (a kept-alive connection written after the reset).
_CONNECTION_LOST = re.compile(
  r"Couldn't connect|Connection refused|Connection reset|Broken pipe|"
  r"Empty reply|ConnectionRefusedError|ConnectionResetError|BrokenPipeError"
  r"|RemoteDisconnected")
_CURL_ADDRESS = re.compile(r"Failed to connect to (\S+) port (\d+)")
_RPC_NODE = re.compile(r"rpc call to node (\S+?):? ")


def _Target(event, rapi_target, node_targets):
  """C{HOST:PORT} of the daemon a failed operation talked to, or None."""
  detail = event.get("detail", "")
  if event["kind"] == "rapi":
    return rapi_target
  match = _CURL_ADDRESS.search(detail)
  if match:
    return "%s:%s" % match.groups()
  match = _RPC_NODE.search(detail)
  return node_targets.get(match.group(1)) if match else None


def LostToRestarts(events, rapi_target, node_targets, slack=2.0):
  """Split the failed jobs, queries, RAPI requests and RAPI jobs: those
  that lost their connection (see L{_CONNECTION_LOST}) to a daemon the
  probe saw refuse connections within C{slack} s, i.e. while it
  restarted, and the others.

  @param rapi_target: C{HOST:PORT} the RAPI client talks to
  @param node_targets: {node name: noded's C{HOST:PORT}}
  @return: C{(lost to restarts, others)}, lists of events
  """
  refusals = [e for e in events if e["kind"] == "refused"]
  lost = []
  others = []
  for event in events:
    if event["ok"] or event["kind"] not in ("job", "query", "rapi",
                                            "rapi_job"):
      continue
    target = _Target(event, rapi_target, node_targets)
    if target and _CONNECTION_LOST.search(event.get("detail", "")) and any(
        refusal["op"] == target and
        refusal["t"] - slack <= event["t"] + event.get("dt", 0) and
        event["t"] <= refusal["t"] + refusal["dt"] + slack
        for refusal in refusals):
      lost.append(event)
    else:
      others.append(event)
  return (lost, others)


def _Children(pid):
  """The child processes of C{pid}: nsenter forks the driver (to enter the
  node's PID namespace) and does not pass signals on to it."""
  try:
    with open("/proc/%d/task/%d/children" % (pid, pid)) as children:
      return [int(child) for child in children.read().split()]
  except OSError:
    return []


def _Percentile(values, fraction):
  if not values:
    return None
  ordered = sorted(values)
  return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered)
                                                             - 1))))]


def Summarize(events, start, end):
  """The figures of the events that began in C{[start, end)}: a dict."""
  chosen = [e for e in events if start <= e["t"] < end]

  def Count(kinds):
    picked = [e for e in chosen if e["kind"] in kinds]
    return (len(picked), sum(1 for e in picked if e["ok"]),
            [e for e in picked if not e["ok"]])

  (jobs, jobs_ok, jobs_failed) = Count(("job", "rapi_job"))
  (queries, queries_ok, queries_failed) = Count(("query",))
  (rapi, rapi_ok, rapi_failed) = Count(("rapi",))
  (rpcs, _, rpcs_failed) = Count(("rpc",))
  refusals = [e for e in chosen if e["kind"] == "refused"]
  longest = max(refusals, key=lambda e: e["dt"], default=None)
  latencies = [e["dt"] * 1000 for e in chosen
               if e["kind"] == "rpc" and e["ok"]]
  return {
    "jobs": jobs, "jobs_ok": jobs_ok, "jobs_failed": jobs_failed,
    "queries": queries, "queries_failed": queries_failed,
    "rapi": rapi, "rapi_failed": rapi_failed,
    "rpcs": rpcs, "rpcs_failed": rpcs_failed,
    "longest_refusal": longest,
    "rpc_p50": _Percentile(latencies, 0.5),
    "rpc_p99": _Percentile(latencies, 0.99),
    "seconds": end - start,
  }


_COLUMNS = ("step", "s", "jobs", "ok", "failed", "queries failed",
            "RAPI", "RAPI failed", "longest refusal", "RPC p50 ms",
            "RPC p99 ms", "RPC failed")


def _Row(name, figures):
  refusal = figures["longest_refusal"]
  return (name, "%.0f" % figures["seconds"], str(figures["jobs"]),
          str(figures["jobs_ok"]), str(len(figures["jobs_failed"])),
          "%d/%d" % (len(figures["queries_failed"]), figures["queries"]),
          str(figures["rapi"]), str(len(figures["rapi_failed"])),
          "%.1f s %s" % (refusal["dt"], refusal["op"]) if refusal else "0",
          "%.0f" % figures["rpc_p50"] if figures["rpc_p50"] is not None
          else "-",
          "%.0f" % figures["rpc_p99"] if figures["rpc_p99"] is not None
          else "-",
          "%d/%d" % (len(figures["rpcs_failed"]), figures["rpcs"]))


def FormatTable(rows, total):
  """A Markdown table of C{rows} (C{(step name, figures)}) and the
  C{total} figures of the whole run, then the failed operations."""
  whole = dict(total, seconds=sum(figures["seconds"]
                                  for (_, figures) in rows))
  cells = [_COLUMNS] + [_Row(name, figures) for (name, figures) in
                        rows + [("whole run", whole)]]
  widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]

  def Line(row):
    return "| %s |" % " | ".join(cell.ljust(width)
                                 for (cell, width) in zip(row, widths))

  lines = [Line(cells[0]), Line(["-" * width for width in widths])]
  lines += [Line(row) for row in cells[1:]]
  for (name, figures) in rows:
    lines += ["%s: %s" % (name, failure) for failure in _Failures(figures)]
  return "\n".join(lines)


def _Failures(figures):
  """The failed operations of a row, those with the same reason together:
  C{count x kind (operations) first-last time: reason}."""
  groups = {}
  for key in ("jobs_failed", "queries_failed", "rapi_failed", "rpcs_failed"):
    for event in figures[key]:
      groups.setdefault((event["kind"], event.get("detail", "")),
                        []).append(event)

  def Clock(event):
    return time.strftime("%H:%M:%S", time.gmtime(event["t"]))

  return ["%d x %s (%s) %s-%s: %s" % (
            len(events), kind, ", ".join(sorted({e["op"] for e in events})),
            Clock(events[0]), Clock(events[-1]), detail)
          for ((kind, detail), events) in sorted(
            groups.items(), key=lambda item: item[1][0]["t"])]
