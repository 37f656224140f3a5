"""Ganeti's own tools as the scenario uses them on a node.

L{GanetiCommands} runs commands inside a L{node.Node} and turns what an
operator would read (exit statuses, job states, RAPI answers, daemon logs)
into values or a L{CheckFailed} that says what went wrong.
"""

import json
import re
import shlex
import time

DAEMON_UTIL = "/usr/lib/ganeti/daemon-util"

#: Seconds a daemon-util start or stop may take before it counts as hung.
DAEMON_UTIL_TIMEOUT = 60

RAPI_URL = "https://127.0.0.1:5080"

#: The daemons serving HTTP with ganeti.http, by their name in the backend
#: flag (and in the package's log line), with the log Ganeti writes for each.
HTTP_DAEMON_LOGS = {
  "noded": "/var/log/ganeti/node-daemon.log",
  "rapi": "/var/log/ganeti/rapi-daemon.log",
}

_FINAL_JOB_STATES = ("success", "error", "canceled")


class CheckFailed(Exception):
  """A check's outcome differs from a working cluster's."""


def Tail(text, limit=600):
  """The end of a command's output, on one line."""
  return " | ".join(text.strip().splitlines())[-limit:]


class GanetiCommands(object):
  """Commands on one node; each raises L{CheckFailed} when it fails.

  @param rapi_credentials: C{"user:password"} sent to RAPI by default
  """

  def __init__(self, node, rapi_credentials):
    self.node = node
    self.rapi_credentials = rapi_credentials

  def Run(self, command, timeout=300):
    """Run a shell command that must succeed; return its standard output.

    @raise subprocess.TimeoutExpired: it ran longer than C{timeout} s
    """
    result = self.node.Run(command, check=False, timeout=timeout)
    if result.returncode != 0:
      raise CheckFailed("%s exited with %d: %s" % (
        command, result.returncode, Tail(result.stdout + result.stderr)))
    return result.stdout

  def DaemonUtil(self, *args):
    """Run daemon-util; longer than L{DAEMON_UTIL_TIMEOUT} is a hang."""
    return self.Run(" ".join([DAEMON_UTIL] + [shlex.quote(a) for a in args]),
                    timeout=DAEMON_UTIL_TIMEOUT)

  def RestartDaemons(self, *daemons):
    """Stop and start each daemon with daemon-util."""
    for daemon in daemons:
      self.DaemonUtil("stop", daemon)
      self.DaemonUtil("start", daemon)

  def RunningDaemons(self):
    """The daemons daemon-util starts that have a process, by its names."""
    names = self.Run(DAEMON_UTIL + " list-start-daemons").split()
    return [name for name in names
            if self.node.Run("pidof -x /usr/sbin/%s" % name,
                             check=False).returncode == 0]

  # Jobs

  def SubmitJob(self, command):
    """Run a C{gnt-*} command given with --submit; return the job id."""
    result = self.node.Run(command, check=False)
    output = result.stdout + result.stderr
    match = re.search(r"JobID: (\d+)", output)
    if result.returncode != 0 or not match:
      raise CheckFailed("%s did not submit a job: %s" % (command,
                                                         Tail(output)))
    return match.group(1)

  def JobStatus(self, job_id):
    return self.Run("gnt-job list --no-headers -o status %s" % job_id).strip()

  def WaitJob(self, job_id):
    """Wait for a job (gnt-job watch); fail unless it succeeded."""
    self.node.Run("gnt-job watch %s" % job_id, check=False)
    status = self.JobStatus(job_id)
    if status != "success":
      raise CheckFailed("job %s ended %s: %s" % (
        job_id, status,
        Tail(self.node.Run("gnt-job info %s" % job_id, check=False).stdout)))

  def WaitJobRunning(self, job_id, timeout=60):
    """Wait until a job has left the queue and runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      status = self.JobStatus(job_id)
      if status == "running":
        return
      if status not in ("queued", "waiting"):
        raise CheckFailed("job %s is %s, not running" % (job_id, status))
      time.sleep(0.2)
    raise CheckFailed("job %s did not start" % job_id)

  # RAPI

  def Rapi(self, method, path, body=None, credentials=None):
    """One RAPI request with curl inside the node; C{(status, body)}.

    @param credentials: C{"user:password"}; None: the default ones; False:
        none
    """
    if credentials is None:
      credentials = self.rapi_credentials
    command = ["curl", "-sk", "-X", method, "-o", "/dev/stdout",
               "-w", "\\n%{http_code}"]
    if credentials:
      command += ["-u", credentials]
    if body is not None:
      command += ["-H", "Content-Type: application/json",
                  "--data-binary", json.dumps(body)]
    command.append(RAPI_URL + path)
    output = self.Run(" ".join(shlex.quote(part) for part in command))
    (answer, _, status) = output.rpartition("\n")
    return (int(status), answer)

  def WaitRapiJob(self, job_id, timeout=120):
    """Poll a job through RAPI until it ends; fail unless it succeeded."""
    deadline = time.monotonic() + timeout
    while True:
      (status, body) = self.Rapi("GET", "/2/jobs/%s" % job_id)
      if status != 200:
        raise CheckFailed("GET /2/jobs/%s answered %d: %s" % (job_id, status,
                                                              body))
      job = json.loads(body)
      if job["status"] in _FINAL_JOB_STATES:
        break
      if time.monotonic() > deadline:
        raise CheckFailed("RAPI job %s still %s" % (job_id, job["status"]))
      time.sleep(0.5)
    if job["status"] != "success":
      raise CheckFailed("RAPI job %s ended %s: %s" % (job_id, job["status"],
                                                      job.get("opresult")))

  # Logs and packages

  def DaemonLog(self, daemon):
    """The whole log of an HTTP daemon (noded, rapi); empty if none."""
    return self.node.Run("cat %s" % HTTP_DAEMON_LOGS[daemon],
                         check=False).stdout

  def LogPositions(self):
    """{daemon: length of its log}, to read later only what came next."""
    return {daemon: len(self.DaemonLog(daemon)) for daemon in HTTP_DAEMON_LOGS}

  def BackendLines(self, daemon, since=0):
    """The backends named by the package's "HTTP backend of" log lines."""
    return re.findall(r"HTTP backend of %s: (\w+)" % daemon,
                      self.DaemonLog(daemon)[since:])

  def LastLogErrors(self):
    """The last line naming an error in each HTTP daemon's log."""
    found = []
    for daemon in sorted(HTTP_DAEMON_LOGS):
      lines = [line for line in self.DaemonLog(daemon).splitlines()
               if re.search(r"Error|ERROR|denied", line)]
      if lines:
        found.append("%s: %s" % (daemon, lines[-1].strip()))
    return "; ".join(found)

  def PackageInstalled(self, package):
    status = self.node.Run("dpkg-query -W -f '${db:Status-Status}' %s"
                           % package, check=False).stdout
    return status == "installed"


def SetConfigKey(path, section, key, value):
  """Set one key of an INI file, as an operator edits it by hand.

  The key's line in the section (also a commented-out one) is replaced; a
  key the section lacks is added under its header, a missing section at
  the end. Comments and the other lines stay.
  """
  with open(path) as config:
    lines = config.read().splitlines()
  header = "[%s]" % section
  if header not in lines:
    lines += ["", header]
  start = lines.index(header) + 1
  end = next((i for i in range(start, len(lines))
              if lines[i].startswith("[")), len(lines))
  setting = "%s = %s" % (key, value)
  pattern = re.compile(r"#?\s*%s\s*=" % re.escape(key))
  for i in range(start, end):
    if pattern.match(lines[i]):
      lines[i] = setting
      break
  else:
    lines.insert(start, setting)
  with open(path, "w") as config:
    config.write("\n".join(lines) + "\n")
