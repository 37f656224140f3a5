"""ApacheBench (C{ab}, Debian package apache2-utils) as the load generator.

C{ab} is C: it does not compete with the servers for a Python GIL, it does
keep-alive (C{-k}), POST bodies (C{-p}/C{-T}) and presents a client
certificate over HTTPS (C{-E}), and it writes its latency percentiles with
microsecond resolution (C{-e}).  It is single-threaded, so it takes at most
one core.
"""

import dataclasses
import os
import re
import shutil
import subprocess
import tempfile

#: Upper bound of requests per run; runs normally end at their time limit.
#: (ab allocates its statistics for this many requests up front.)
MAX_REQUESTS = 1000000

_SUMMARY_FIELDS = {
  "complete": r"Complete requests:\s+(\d+)",
  "failed": r"Failed requests:\s+(\d+)",
  "non_2xx": r"Non-2xx responses:\s+(\d+)",
  "keepalive_requests": r"Keep-Alive requests:\s+(\d+)",
  "rps": r"Requests per second:\s+([\d.]+)",
  "seconds": r"Time taken for tests:\s+([\d.]+)",
}


class LoadGeneratorError(Exception):
  """ab is missing, failed, or printed something unexpected."""


@dataclasses.dataclass
class AbResult(object):
  """One ab run: throughput, latency percentiles (ms) and errors."""
  complete: int
  failed: int
  non_2xx: int
  keepalive_requests: int
  rps: float
  seconds: float
  percentiles: dict

  @property
  def p50(self):
    """Median latency of a request, in ms (connection set-up included)."""
    return self.percentiles[50]

  @property
  def p99(self):
    """99th percentile latency, in ms."""
    return self.percentiles[99]

  @property
  def errors(self):
    """Requests that failed or were not answered with 2xx."""
    return self.failed + self.non_2xx


def FindAb():
  """Return the path of ab.

  @raise LoadGeneratorError: it is not installed
  """
  path = shutil.which("ab")
  if path is None:
    raise LoadGeneratorError("ab not found; install Debian's apache2-utils"
                             " (make bench does)")
  return path


def Version():
  """ab's version line."""
  output = subprocess.run([FindAb(), "-V"], stdout=subprocess.PIPE,
                          check=True).stdout.decode()
  line = output.splitlines()[0].strip()
  return line[len("This is "):] if line.startswith("This is ") else line


def _Command(url, concurrency, keepalive, seconds, requests, post_file,
             content_type, client_cert, csv_path):
  command = [FindAb(), "-q", "-r", "-s", "30"]
  if seconds is not None:
    # -t must come before -n: ab's -t resets the request count.
    command.extend(["-t", str(seconds)])
  command.extend(["-n", str(requests or MAX_REQUESTS), "-c", str(concurrency),
                  "-e", csv_path])
  if keepalive:
    command.append("-k")
  if post_file is not None:
    command.extend(["-p", post_file, "-T", content_type])
  if client_cert is not None:
    command.extend(["-E", client_cert])
  command.append(url)
  return command


def _ParseSummary(output):
  values = {}
  for (name, pattern) in _SUMMARY_FIELDS.items():
    match = re.search(pattern, output)
    if match is None and name not in ("non_2xx", "keepalive_requests"):
      raise LoadGeneratorError("ab printed no %r:\n%s" % (name, output))
    values[name] = match.group(1) if match else "0"
  return values


def _ReadPercentiles(csv_path):
  """{percent: ms} from ab's -e file ("Percentage served,Time in ms").

  With fewer than 100 requests ab reads past its samples for the top
  percentiles and writes 0; those are None here.
  """
  percentiles = {}
  highest = 0.0
  with open(csv_path) as handle:
    next(handle)
    for line in handle:
      (percent, millis) = line.strip().split(",")
      millis = float(millis)
      if millis < highest:
        percentiles[int(percent)] = None
      else:
        percentiles[int(percent)] = highest = millis
  return percentiles


def Run(url, concurrency, keepalive, seconds=None, requests=None,
        post_file=None, content_type=None, client_cert=None):
  """Load C{url} with C{concurrency} clients for C{seconds} (whole seconds:
  ab's unit) or C{requests} requests, whichever ends first.

  @param post_file: file whose content each request POSTs (None: GET)
  @param client_cert: PEM with the client's key and certificate (HTTPS)
  @rtype: L{AbResult}
  @raise LoadGeneratorError: ab failed
  """
  (descriptor, csv_path) = tempfile.mkstemp(prefix="bench-ab-",
                                            suffix=".csv")
  os.close(descriptor)
  try:
    result = subprocess.run(
      _Command(url, concurrency, keepalive, seconds, requests, post_file,
               content_type, client_cert, csv_path),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      timeout=(seconds or 0) + 120, check=False)
    output = result.stdout.decode("utf-8", "replace")
    if result.returncode != 0:
      raise LoadGeneratorError("ab exited with %d:\n%s" %
                               (result.returncode, output))
    values = _ParseSummary(output)
    return AbResult(complete=int(values["complete"]),
                    failed=int(values["failed"]),
                    non_2xx=int(values["non_2xx"]),
                    keepalive_requests=int(values["keepalive_requests"]),
                    rps=float(values["rps"]),
                    seconds=float(values["seconds"]),
                    percentiles=_ReadPercentiles(csv_path))
  finally:
    os.unlink(csv_path)
