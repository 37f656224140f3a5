"""Big transfers and feedback delays: the clients of the streamed rows.

A transfer runs one client in a process of its own, so that its peak
memory is its own (reported by GNU time, C{/usr/bin/time -f %M}):

  - C{curl} (C, the command-line tool): C{-o /dev/null} for downloads,
    C{-T FILE} for uploads (a PUT with a Content-Length, read from the
    file as it goes out);
  - Ganeti's client (L{ganeti.http.client}, pycurl) in
    C{python -m bench.pycurl_transfer}: C{response_file=} for downloads,
    C{post_data=} an open file for uploads.

Both send C{Expect: 100-continue} before a body over 1 MiB, as libcurl
does for Ganeti's RPCs.  The servers' peak memory (VmHWM) is reset before
each transfer (C{/proc/PID/clear_refs}) and read after it, process by
process.

Feedback delays are measured in the bench's own process with Ganeti's
client and a C{feedback_fn}, as a master daemon would receive them.
"""

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import pycurl

from bench import procs
from bench import streaming
from bench.pycurl_transfer import PlainHttp
from ganeti.http import client

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: Slowest transfer accepted, in bytes per second (sets the timeouts).
_SLOWEST = 20e6

#: Roles of a server's processes, in report order.
ROLES = ("daemon", "worker", "lighttpd")


@dataclasses.dataclass
class TransferResult(object):
  """One transfer, seen from the client, plus everyone's peak memory.

  @ivar size: bytes the transfer should move
  @ivar moved: bytes it moved (downloaded, or uploaded and counted by the
      handler)
  @ivar seconds: the client's time from start to end of the request
  @ivar client: the client's name in the report
  @ivar client_rss_kib: the client process's peak RSS
  @ivar server_rss_kib: C{{role: KiB}}, the peak RSS of each of the
      server's processes in the data path (for several FastCGI workers,
      of the biggest)
  @ivar error: why it failed, or None
  @ivar runs: the throughputs (GB/s) of all the runs this result stands
      for (see L{Transfer}), in order
  @ivar total_moved: bytes all of those runs moved
  """
  size: int
  moved: int
  seconds: float
  client: str
  client_rss_kib: int
  server_rss_kib: Dict[str, int] = dataclasses.field(default_factory=dict)
  error: Optional[str] = None
  runs: List[float] = dataclasses.field(default_factory=list)
  total_moved: int = 0

  @property
  def gbps(self):
    """Throughput in GB/s (10^9 bytes per second)."""
    return self.moved / self.seconds / 1e9 if self.seconds else 0.0

  def PeakRss(self):
    """C{[(name, KiB)]}: the server's processes, then the client."""
    rss = [(role, self.server_rss_kib[role]) for role in ROLES
           if role in self.server_rss_kib]
    rss.append((self.client, self.client_rss_kib))
    return rss


#: GNU time (Debian package "time"): reports a command's peak RSS.
GNU_TIME = "/usr/bin/time"


def _RunChild(command, timeout):
  """Run C{command}; return C{(exit status, stdout, stderr, peak RSS KiB)}.

  The peak RSS comes from GNU time, which runs the command as its own
  child: the C{ru_maxrss} of a child forked by this (big) Python process
  would include the memory it shared with it before C{exec}.  The command
  is killed after C{timeout} seconds.
  """
  with tempfile.NamedTemporaryFile(prefix="bench-rss-") as rss_file, \
      tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
    process = subprocess.Popen(
      [GNU_TIME, "-f", "%M", "-o", rss_file.name] + command,
      stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=REPO,
      start_new_session=True)
    try:
      code = process.wait(timeout)
    except subprocess.TimeoutExpired:
      os.killpg(process.pid, signal.SIGKILL)
      code = process.wait()
    out.seek(0)
    err.seek(0)
    rss_file.seek(0)
    lines = rss_file.read().decode().split()
    return (code, out.read().decode("utf-8", "replace"),
            err.read().decode("utf-8", "replace"),
            int(lines[-1]) if lines and lines[-1].isdigit() else 0)


def FindTools():
  """Fail unless curl and GNU time are installed.

  @raise SystemExit: one is not
  """
  if not shutil.which("curl"):
    raise SystemExit("curl not found; install Debian's package \"curl\""
                     " (make bench does)")
  if not os.access(GNU_TIME, os.X_OK):
    raise SystemExit("%s not found; install Debian's package \"time\""
                     " (make bench does)" % GNU_TIME)


def _Timeout(size):
  return 60 + size / _SLOWEST


_CURL_FORMAT = "\nbench: %{http_code} %{size_download} %{time_total}\n"


def Curl(url, size, upload_path=None):
  """Download C{size} bytes from C{url} with curl, or upload the file
  C{upload_path} (of C{size} bytes) to it with PUT.

  @rtype: L{TransferResult}
  """
  command = ["curl", "-sS", "--max-time", "%d" % _Timeout(size),
             "-w", _CURL_FORMAT]
  if upload_path is None:
    command.extend(["-o", "/dev/null"])
  else:
    command.extend(["-T", upload_path])
  command.append(url)
  (code, out, err, rss) = _RunChild(command, _Timeout(size) + 10)
  (body, _, summary) = out.rpartition("bench: ")
  try:
    (status, downloaded, seconds) = summary.split()
    (status, downloaded, seconds) = (int(status), int(downloaded),
                                     float(seconds))
  except ValueError:
    return TransferResult(size, 0, 0.0, "curl", rss,
                          error="curl exited with %d: %s" % (code,
                                                             err.strip()))
  moved = downloaded if upload_path is None else _CountedBytes(body)
  error = None
  if code != 0 or status != 200 or moved != size:
    error = ("curl exited with %d, HTTP status %d, %d of %d bytes: %s" %
             (code, status, moved, size, err.strip()))
  return TransferResult(size, moved, seconds, "curl", rss, error=error)


def _CountedBytes(body):
  """The byte count an upload's answer holds, or -1."""
  try:
    return int(body.strip())
  except ValueError:
    return -1


def Pycurl(url, size, upload_path=None):
  """L{Curl}, with Ganeti's client in a child process
  (L{bench.pycurl_transfer})."""
  command = [sys.executable, "-m", "bench.pycurl_transfer", url,
             "--timeout", "%d" % _Timeout(size)]
  if upload_path is not None:
    command.extend(["--upload", upload_path])
  (code, out, err, rss) = _RunChild(command, _Timeout(size) + 10)
  try:
    outcome = json.loads(out.strip().splitlines()[-1])
  except (ValueError, IndexError):
    return TransferResult(size, 0, 0.0, "pycurl", rss,
                          error="pycurl client exited with %d: %s" %
                          (code, err.strip()[-500:]))
  moved = (outcome["downloaded"] if upload_path is None
           else _CountedBytes(outcome["body"] or ""))
  error = outcome["error"]
  if error is None and (outcome["status"] != 200 or moved != size):
    error = "HTTP status %s, %d of %d bytes" % (outcome["status"], moved,
                                               size)
  return TransferResult(size, moved, outcome["seconds"], "pycurl", rss,
                        error=error)


def PycurlVersion():
  """"PycURL/x libcurl/y", the versions of Ganeti's client library."""
  return " ".join(pycurl.version.split()[:2])


def ServerProcesses(server_pid):
  """C{{role: [pid]}} of the processes of the server whose main process is
  C{server_pid}: the daemon, its FastCGI workers and lighttpd (not
  lighttpd's lifeline, a shell that only waits)."""
  pids = procs.Descendants([server_pid])
  lighttpd = procs.Named(pids, "lighttpd")
  shells = procs.Named(pids, "sh")
  roles = {"daemon": [server_pid], "lighttpd": lighttpd,
           "worker": [pid for pid in pids
                      if pid not in lighttpd + shells + [server_pid]]}
  return {role: found for (role, found) in roles.items() if found}


def Transfer(server_pid, run, roles=ROLES, repeats=1):
  """Run C{run()} (returning a L{TransferResult}) C{repeats} times in a
  row; return the run of median throughput (the first failed one, if
  any), with every run's throughput and bytes, the client's largest peak
  RSS, and the peak RSS of the server's processes of C{roles} over all
  runs."""
  processes = {role: pids
               for (role, pids) in ServerProcesses(server_pid).items()
               if role in roles}
  for pids in processes.values():
    procs.ResetPeakRss(pids)
  results = [run() for _ in range(repeats)]
  failed = [result for result in results if result.error]
  result = (failed or sorted(results, key=lambda item: item.gbps))[
    0 if failed else len(results) // 2]
  result.runs = [item.gbps for item in results]
  result.total_moved = sum(item.moved for item in results)
  result.client_rss_kib = max(item.client_rss_kib for item in results)
  for (role, pids) in processes.items():
    result.server_rss_kib[role] = max(procs.PeakRssKiB(pid) or 0
                                      for pid in pids)
  return result


def HttpsConfig(ca_path, client_path):
  """A C{curl_config_fn} set up as Ganeti's RPC client sets it: the
  cluster certificate as CA, the node certificate as client certificate."""
  def _Configure(curl):
    curl.setopt(pycurl.CAINFO, ca_path)
    curl.setopt(pycurl.SSL_VERIFYPEER, True)
    curl.setopt(pycurl.SSL_VERIFYHOST, 0)
    curl.setopt(pycurl.SSLCERTTYPE, "PEM")
    curl.setopt(pycurl.SSLCERT, client_path)
    curl.setopt(pycurl.SSLKEYTYPE, "PEM")
    curl.setopt(pycurl.SSLKEY, client_path)
  return _Configure


@dataclasses.dataclass
class LatencyResult(object):
  """Delays from a feedback message's yield to its C{feedback_fn} call.

  @ivar delays: seconds, one per message, in arrival order
  @ivar error: why the request failed, or None
  """
  delays: List[float]
  error: Optional[str] = None

  def Percentile(self, percent):
    """Nearest-rank percentile of the delays, in ms (None without any)."""
    if not self.delays:
      return None
    ordered = sorted(self.delays)
    rank = max(1, math.ceil(percent / 100.0 * len(ordered)))
    return ordered[rank - 1] * 1e3

  @property
  def p50(self):
    """Median delay in ms."""
    return self.Percentile(50)

  @property
  def p99(self):
    """99th percentile delay in ms."""
    return self.Percentile(99)

  @property
  def worst(self):
    """Longest delay in ms."""
    return max(self.delays) * 1e3 if self.delays else None


def FeedbackDelays(url_base, count, interval, https_config=None):
  """Ask C{GET /feedback} at C{url_base} (C{http[s]://127.0.0.1:port})
  for C{count} messages C{interval} seconds apart, with Ganeti's client in
  this process.

  @param https_config: the L{HttpsConfig} of an https C{url_base}
  @rtype: L{LatencyResult}
  """
  delays = []

  def _Feedback(message):
    delays.append(time.monotonic() - message["t"])

  path = "%s?count=%d&interval=%g" % (streaming.FEEDBACK_PATH, count,
                                      interval)
  port = int(url_base.rsplit(":", 1)[1])
  request = client.HttpClientRequest(
    "127.0.0.1", port, "GET", path, feedback_fn=_Feedback,
    curl_config_fn=https_config or PlainHttp(url_base + path),
    read_timeout=60 + count * interval * 2)
  client.ProcessRequests([request])
  error = None
  if not request.success:
    error = request.error
  elif request.resp_status_code != 200 or len(delays) != count:
    error = "HTTP status %s, %d of %d messages" % (request.resp_status_code,
                                                   len(delays), count)
  elif json.loads(request.resp_body) != count:
    error = "Unexpected result %r" % request.resp_body
  return LatencyResult(delays, error)
