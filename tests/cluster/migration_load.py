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
  if event["kind"] == "rpc":
    return node_targets.get(event["op"])
  match = _CURL_ADDRESS.search(detail)
  if match:
    return "%s:%s" % match.groups()
  match = _RPC_NODE.search(detail)
  return node_targets.get(match.group(1)) if match else None


#: Seconds around a refusal (as the probe saw it) in which a lost
#: connection to the same daemon counts as lost to that restart.
RESTART_SLACK = 2.0


def _Refusal(event, target, refusals):
  """The refusal of C{target} that C{event} overlaps (give or take
  L{RESTART_SLACK}), or None."""
  for refusal in refusals:
    if (refusal["op"] == target and
        refusal["t"] - RESTART_SLACK <= event["t"] + event.get("dt", 0) and
        event["t"] <= refusal["t"] + refusal["dt"] + RESTART_SLACK):
      return refusal
  return None


def _LostTo(event, refusals, rapi_target, node_targets):
  """The refusal a failed operation lost its connection in (see
  L{_CONNECTION_LOST}), or None: it failed otherwise."""
  target = _Target(event, rapi_target, node_targets)
  if not target or not _CONNECTION_LOST.search(event.get("detail", "")):
    return None
  return _Refusal(event, target, refusals)


def _Refusals(events):
  return [e for e in events if e["kind"] == "refused"]


def LostToRestarts(events, rapi_target, node_targets):
  """Split the failed jobs, queries, RAPI requests and RAPI jobs: those
  that lost their connection (see L{_CONNECTION_LOST}) to a daemon the
  probe saw refuse connections within L{RESTART_SLACK} s, i.e. while it
  restarted, and the others.

  @param rapi_target: C{HOST:PORT} the RAPI client talks to
  @param node_targets: {node name: noded's C{HOST:PORT}}
  @return: C{(lost to restarts, others)}, lists of events
  """
  refusals = _Refusals(events)
  lost = []
  others = []
  for event in events:
    if event["ok"] or event["kind"] not in ("job", "query", "rapi",
                                            "rapi_job"):
      continue
    if _LostTo(event, refusals, rapi_target, node_targets):
      lost.append(event)
    else:
      others.append(event)
  return (lost, others)


def Clock(moment):
  """C{HH:MM:SS.mmm} (UTC) of a time stamp."""
  return "%s.%03d" % (time.strftime("%H:%M:%S", time.gmtime(moment)),
                      int(moment * 1000) % 1000)


def FailureLine(event, refusals, rapi_target, node_targets):
  """One failed operation on one line: when it began and how long it
  ran, what it was (the whole command or request), the daemon it talked
  to and whether that daemon refused connections then, and why it failed
  (the error text as the client saw it)."""
  target = _Target(event, rapi_target, node_targets)
  refusal = target and _Refusal(event, target, refusals)
  if refusal:
    window = "%s refused connections %s-%s" % (
      target, Clock(refusal["t"]), Clock(refusal["t"] + refusal["dt"]))
  elif target:
    window = "%s did not refuse connections then" % target
  else:
    window = "daemon unknown"
  lost = _LostTo(event, refusals, rapi_target, node_targets)
  return "%s +%.3f s %s %s%s [%s; %s]: %s" % (
    Clock(event["t"]), event.get("dt", 0), event["kind"],
    event.get("request", event["op"]),
    " (failed at %s)" % event["stage"] if event.get("stage") else "",
    window, "a connection lost to that restart" if lost else
    "NOT a connection lost to a restart", event.get("detail", ""))


_FAILED_KEYS = ("jobs_failed", "queries_failed", "rapi_failed",
                "rpcs_failed")


def Failed(figures):
  """The failed operations of a row (figures as L{Summarize} makes them),
  in time order."""
  return sorted(sum((figures[key] for key in _FAILED_KEYS), []),
                key=lambda event: event["t"])


def FailureReport(groups, events, rapi_target, node_targets):
  """C{groups} (C{(title, [failed event, ...])}) one L{FailureLine} a
  failed operation, under its group's title; C{events}: every event of
  the run (for the refusals the probe saw)."""
  refusals = _Refusals(events)
  lines = []
  for (title, failed) in groups:
    if failed:
      lines.append("%s: %d failed" % (title, len(failed)))
      lines += ["  " + FailureLine(event, refusals, rapi_target,
                                   node_targets) for event in failed]
  return "\n".join(lines)


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
  C{total} figures of the whole run."""
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
  return "\n".join(lines)
