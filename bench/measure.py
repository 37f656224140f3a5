"""One cell of the bench: a load run plus the CPU time it cost whom.

The machine may be shared (other people's test runs): a run starts once
the machine looks quiet (or after L{MAX_QUIET_WAIT} seconds), measures how
busy the machine was with anything but the server under test and the load
generator, and is repeated when that background load exceeded
L{QUIET_CORES}, keeping the quietest of L{TRIES} runs.
"""

import dataclasses
import resource
import time

from bench import loadgen
from bench import procs

#: Background load (in cores) above which a run is repeated.
QUIET_CORES = 0.25

#: Most runs of one cell.
TRIES = 2

#: Longest wait, in seconds, for the machine to become quiet before a run.
MAX_QUIET_WAIT = 5

#: Length of one look at the machine's load, in seconds.
_QUIET_WINDOW = 0.5


@dataclasses.dataclass
class Measurement(object):
  """A load run and the CPU seconds spent during it.

  @ivar ab: what the load returned: the L{loadgen.AbResult}, or for the
      streamed rows a L{bench.transfers.TransferResult} or
      L{bench.transfers.LatencyResult}
  @ivar server_cpu: CPU seconds of the server's processes (daemon,
      FastCGI workers, lighttpd)
  @ivar lighttpd_cpu: the part of C{server_cpu} spent in lighttpd
  @ivar ab_cpu: CPU seconds of the load generator (the processes the
      load ran and reaped)
  @ivar background_cores: average cores busy with anything else
  @ivar tries: runs made to get this one
  """
  ab: loadgen.AbResult
  server_cpu: float
  lighttpd_cpu: float
  ab_cpu: float
  background_cores: float
  tries: int = 1

  def _PerRequest(self, seconds):
    return seconds / self.ab.complete * 1e6 if self.ab.complete else 0.0

  @property
  def server_micros(self):
    """Server CPU microseconds per request."""
    return self._PerRequest(self.server_cpu)

  @property
  def lighttpd_micros(self):
    """lighttpd's CPU microseconds per request."""
    return self._PerRequest(self.lighttpd_cpu)

  @property
  def ab_micros(self):
    """Load generator CPU microseconds per request."""
    return self._PerRequest(self.ab_cpu)


def _ChildrenCpu():
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


def WaitForQuiet(max_wait=MAX_QUIET_WAIT):
  """Wait until the machine is quiet for a moment, or C{max_wait} passed.

  @return: the load of the last look, in cores
  """
  deadline = time.monotonic() + max_wait
  while True:
    busy = procs.MachineBusySeconds()
    time.sleep(_QUIET_WINDOW)
    cores = (procs.MachineBusySeconds() - busy) / _QUIET_WINDOW
    if cores <= QUIET_CORES or time.monotonic() >= deadline:
      return cores


def _Once(server_pid, load):
  pids = procs.Descendants([server_pid])
  lighttpd = procs.Named(pids, "lighttpd")
  (children, busy, server, frontend) = (
    _ChildrenCpu(), procs.MachineBusySeconds(), procs.CpuSeconds(pids),
    procs.CpuSeconds(lighttpd))
  start = time.monotonic()
  result = load()
  elapsed = time.monotonic() - start
  server = procs.CpuSeconds(pids) - server
  frontend = procs.CpuSeconds(lighttpd) - frontend
  ab_cpu = _ChildrenCpu() - children
  background = procs.MachineBusySeconds() - busy - server - ab_cpu
  return Measurement(result, server, frontend, ab_cpu,
                     max(0.0, background / elapsed))


def Measure(server_pid, load):
  """Run C{load()} (returning a L{loadgen.AbResult}, or any result) against
  the server whose main process is C{server_pid}; repeat while the machine
  is busy.

  @rtype: L{Measurement}
  """
  best = None
  for tries in range(1, TRIES + 1):
    WaitForQuiet()
    measurement = _Once(server_pid, load)
    if best is None or measurement.background_cores < best.background_cores:
      best = measurement
    if measurement.background_cores <= QUIET_CORES:
      break
  best.tries = tries
  return best
