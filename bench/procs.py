"""Processes of the bench, read from /proc: which ones a server started
(so that none is left behind) and how much CPU time they and the whole
machine used.
"""

import os


def _Stat(pid):
  """C{(state, ppid)} of C{pid}, or None if it is gone."""
  try:
    with open("/proc/%d/stat" % pid) as handle:
      fields = handle.read().rsplit(")", 1)[1].split()
  except OSError:
    return None
  return (fields[0], int(fields[1]))


def _Pids():
  return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


def Descendants(roots):
  """The pids of C{roots} and of all their live descendants."""
  children = {}
  for pid in _Pids():
    stat = _Stat(pid)
    if stat is not None:
      children.setdefault(stat[1], []).append(pid)
  found = []
  pending = list(roots)
  while pending:
    pid = pending.pop()
    found.append(pid)
    pending.extend(children.get(pid, []))
  return found


def Named(pids, name):
  """Those of C{pids} whose command name is C{name}."""
  found = []
  for pid in pids:
    try:
      with open("/proc/%d/comm" % pid) as handle:
        if handle.read().strip() == name:
          found.append(pid)
    except OSError:
      continue
  return found


def Alive(pids):
  """Those of C{pids} still running (zombies count as gone)."""
  alive = []
  for pid in pids:
    stat = _Stat(pid)
    if stat is not None and stat[0] != "Z":
      alive.append(pid)
  return alive


def Mentioning(text):
  """Pids of live processes other than this one whose command line
  contains C{text}."""
  found = []
  for pid in _Pids():
    if pid == os.getpid():
      continue
    try:
      with open("/proc/%d/cmdline" % pid, "rb") as handle:
        cmdline = handle.read().decode("utf-8", "replace")
    except OSError:
      continue
    if text in cmdline and Alive([pid]):
      found.append(pid)
  return found


_TICKS = os.sysconf("SC_CLK_TCK")


def CpuSeconds(pids):
  """User plus system CPU seconds of C{pids} (those still alive)."""
  ticks = 0
  for pid in pids:
    try:
      with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
      continue
    ticks += int(fields[11]) + int(fields[12])
  return ticks / _TICKS


def MachineBusySeconds():
  """CPU seconds all cores spent on anything but idling since boot."""
  with open("/proc/stat") as handle:
    fields = [int(value) for value in handle.readline().split()[1:]]
  (user, nice, system, _idle, _iowait, irq, softirq, steal) = fields[:8]
  return (user + nice + system + irq + softirq + steal) / _TICKS


def ResetPeakRss(pids):
  """Set the peak RSS (VmHWM) of C{pids} back to their current RSS
  (Linux 4.0 and later; needs the right to trace them, as root has)."""
  for pid in pids:
    try:
      with open("/proc/%d/clear_refs" % pid, "w") as handle:
        handle.write("5")
    except OSError:
      continue


def PeakRssKiB(pid):
  """The peak RSS (VmHWM) of C{pid} in KiB, or None if it is gone."""
  try:
    with open("/proc/%d/status" % pid) as handle:
      for line in handle:
        if line.startswith("VmHWM:"):
          return int(line.split()[1])
  except OSError:
    pass
  return None
