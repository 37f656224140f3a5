"""The checks the test bed runs on one node, for one column of the table.

A column is how the node's HTTP layer is set up: C{stock} (Debian's
Ganeti 3.0 as packaged), C{legacy} or C{fastcgi} (this project's Debian
package installed with C{dpkg -i} and every daemon flipped to that backend
in C{/etc/ganeti/http-backend.conf} before the cluster is initialised).
Every check is what an operator does with Ganeti's own commands; the outcome
of each is C{"pass"}, C{"n/a"} (the check is about the package and the
column has none), or a failure with the reason.
"""

import json
import re
import shlex
import subprocess
import time

COLUMNS = ("stock", "legacy", "fastcgi")

PASS = "pass"
NOT_APPLICABLE = "n/a"
NOT_RUN = "not run"

NODE_NAME = "node1.example.com"
NODE_ADDRESS = "192.0.2.11"
CLUSTER_NAME = "cluster.example.com"
CLUSTER_ADDRESS = "192.0.2.10"

PACKAGE = "ganeti-http-shim"
BACKEND_CONFIG = "/etc/ganeti/http-backend.conf"
DAEMON_UTIL = "/usr/lib/ganeti/daemon-util"
OS_NAME = "testbed"
RAPI_USER = "testbed"
RAPI_PASSWORD = "testbed-secret"
RAPI_URL = "https://127.0.0.1:5080"

#: The daemons serving HTTP with ganeti.http, by their name in the flag
#: (and in the shim's log line) and the log Ganeti writes for each.
HTTP_DAEMON_LOGS = {
  "noded": "/var/log/ganeti/node-daemon.log",
  "rapi": "/var/log/ganeti/rapi-daemon.log",
}

#: C{gnt-cluster verify} errors this environment causes whatever the HTTP
#: layer: no ssh server on the node (the cluster is made with
#: --no-ssh-init), the master IP that verify cannot reach inside the
#: namespace, and a kernel without magic SysRq (no /proc/sysrq-trigger).
KNOWN_VERIFY_ERRORS = (
  re.compile(r"ERROR: node \S+: ssh communication with node '\S+': "
             r"ssh problem: ssh: connect to host \S+ port 22: "
             r"Connection refused"),
  re.compile(r"ERROR: node \S+: the master node cannot reach the master IP"
             r" \(not configured\?\)$"),
  re.compile(r"ERROR: node \S+: node setup error: The procfs filesystem "
             r"doesn't seem to be mounted under /proc, missing required "
             r"directory /proc/sys and the file /proc/sysrq-trigger$"),
)

#: The README's example [fastcgi] settings (see README.md).
README_FASTCGI_SETTINGS = (
  ("processes", "2"),
  ("sendfile-dirs", "/srv/ganeti/export"),
  ("write-idle-timeout", "3600"),
)

#: Seconds a daemon-util start or stop may take before it counts as hung.
DAEMON_UTIL_TIMEOUT = 60


class CheckFailed(Exception):
  """A check's outcome differs from a working cluster's."""


class Scenario(object):
  """The checks, in order, on one started L{node.Node}."""

  def __init__(self, node, column, deb_path=None):
    """@param deb_path: this project's .deb (needed unless C{stock})"""
    if column not in COLUMNS:
      raise ValueError("unknown column %r" % column)
    if column != "stock" and not deb_path:
      raise ValueError("column %s needs the package's .deb" % column)
    self.node = node
    self.column = column
    self.deb_path = deb_path
    self._instance_count = 0

  @property
  def _packaged(self):
    return self.column != "stock"

  def Checks(self):
    """(title, method) of every check, in the order they run."""
    return [
      ("package installed (dpkg -i)", self.CheckInstallPackage),
      ("gnt-cluster init", self.CheckClusterInit),
      ("HTTP backend in use", self.CheckBackendInUse),
      ("gnt-cluster verify", self.CheckClusterVerify),
      ("gnt-node list/info", self.CheckNodeInfo),
      ("instance add (and start)", self.CheckInstanceAdd),
      ("instance shutdown", self.CheckInstanceShutdown),
      ("instance startup", self.CheckInstanceStartup),
      ("instance reboot", self.CheckInstanceReboot),
      ("instance remove", self.CheckInstanceRemove),
      ("RAPI authentication", self.CheckRapiAuthentication),
      ("RAPI job", self.CheckRapiJob),
      ("gnt-debug delay RPC", self.CheckDelayRpc),
      ("noded and RAPI log each request", self.CheckRequestLogLines),
      ("noded stopped during a delay RPC", self.CheckRestartDuringRpc),
      ("each daemon restarted (daemon-util)", self.CheckDaemonRestarts),
      ("README example settings", self.CheckReadmeSettings),
      ("ganeti-3.0 reinstalled", self.CheckGanetiReinstall),
      ("reboot (stop-all, /run wiped, init script)", self.CheckReboot),
      ("package removed (stock restored)", self.CheckPackageRemoval),
      ("every job succeeded", self.CheckJobsSucceeded),
    ]

  def Run(self):
    """Run every check; return a list of C{(title, outcome)}.

    After a failed C{gnt-cluster init} the later checks are not run.
    """
    outcomes = []
    cluster_up = True
    for (title, check) in self.Checks():
      if not cluster_up:
        outcomes.append((title, NOT_RUN))
        continue
      outcomes.append((title, self._Outcome(check)))
      if check == self.CheckClusterInit and outcomes[-1][1] != PASS:
        cluster_up = False
    return outcomes

  @staticmethod
  def _Outcome(check):
    try:
      return check() or PASS
    except CheckFailed as err:
      return "FAIL: %s" % err
    except subprocess.TimeoutExpired as err:
      return "FAIL: hung, %r did not end within %s s" % (err.cmd[-1],
                                                         err.timeout)
    except Exception as err:  # pylint: disable=broad-except
      return "FAIL: %s: %s" % (err.__class__.__name__, err)

  # Helpers

  def _Run(self, command, timeout=300):
    """Run a command that must succeed; return its standard output."""
    result = self.node.Run(command, check=False, timeout=timeout)
    if result.returncode != 0:
      raise CheckFailed("%s exited with %d: %s" % (
        command, result.returncode,
        _Tail(result.stdout + result.stderr)))
    return result.stdout

  def _DaemonUtil(self, *args):
    """Run daemon-util; a run longer than DAEMON_UTIL_TIMEOUT is a hang."""
    return self._Run(" ".join([DAEMON_UTIL] + [shlex.quote(a) for a in args]),
                     timeout=DAEMON_UTIL_TIMEOUT)

  def _RunningDaemons(self):
    """The Ganeti daemons that have a live pid file, as daemon-util names."""
    names = self._Run(DAEMON_UTIL + " list-start-daemons").split()
    return [name for name in names
            if self.node.Run("pidof -x /usr/sbin/%s" % name,
                             check=False).returncode == 0]

  def _SubmitJob(self, command):
    """Run a C{gnt-*} command given with --submit; return the job id."""
    result = self.node.Run(command, check=False)
    output = result.stdout + result.stderr
    match = re.search(r"(\d+)\s*$", output)
    if not match:
      raise CheckFailed("no job id in the output of %s: %s" % (command,
                                                              output))
    return match.group(1)

  def _WaitJob(self, job_id):
    """Wait for a job; fail unless it succeeded."""
    self.node.Run("gnt-job watch %s" % job_id, check=False)
    status = self._Run("gnt-job list --no-headers -o status %s" % job_id)
    if status.strip() != "success":
      raise CheckFailed("job %s ended %s: %s" % (
        job_id, status.strip(),
        _Tail(self.node.Run("gnt-job info %s" % job_id, check=False).stdout)))

  def _Rapi(self, method, path, body=None, credentials=True):
    """One RAPI request with curl inside the node; C{(status, body)}."""
    command = ["curl", "-sk", "-X", method, "-o", "/dev/stdout",
               "-w", "\\n%{http_code}"]
    if credentials:
      command += ["-u", credentials if isinstance(credentials, str)
                  else "%s:%s" % (RAPI_USER, RAPI_PASSWORD)]
    if body is not None:
      command += ["-H", "Content-Type: application/json",
                  "--data-binary", json.dumps(body)]
    command.append(RAPI_URL + path)
    output = self._Run(" ".join(shlex.quote(part) for part in command))
    (answer, _, status) = output.rpartition("\n")
    return (int(status), answer)

  def _WaitRapiJob(self, job_id, timeout=120):
    """Poll a job through RAPI until it ends; fail unless it succeeded."""
    deadline = time.monotonic() + timeout
    while True:
      (status, body) = self._Rapi("GET", "/2/jobs/%s" % job_id)
      if status != 200:
        raise CheckFailed("GET /2/jobs/%s answered %d: %s" % (job_id, status,
                                                              body))
      job = json.loads(body)
      if job["status"] in ("success", "error", "canceled"):
        break
      if time.monotonic() > deadline:
        raise CheckFailed("RAPI job %s still %s" % (job_id, job["status"]))
      time.sleep(0.5)
    if job["status"] != "success":
      raise CheckFailed("RAPI job %s ended %s: %s" % (job_id, job["status"],
                                                      job.get("opresult")))

  def _CheckClusterWorks(self):
    """The short proof that RPC and RAPI work: used after each disruption."""
    self._Run("gnt-node list --no-headers -o name,master_candidate")
    self._Run("gnt-debug delay --no-master -n %s 0.1" % NODE_NAME)
    (status, body) = self._Rapi("GET", "/2/info")
    if status != 200:
      raise CheckFailed("RAPI GET /2/info answered %d: %s" % (status, body))

  def _RestartHttpDaemons(self):
    """Stop and start noded and rapi with daemon-util."""
    for daemon in ("ganeti-noded", "ganeti-rapi"):
      self._DaemonUtil("stop", daemon)
      self._DaemonUtil("start", daemon)

  def _LogLength(self, daemon):
    """The current size of a daemon's log, to read only what comes next."""
    return len(self.node.Run("cat %s" % HTTP_DAEMON_LOGS[daemon],
                             check=False).stdout)

  def _BackendLines(self, daemon, since=0):
    """The shim's "HTTP backend of" lines in a daemon's log after C{since}."""
    log = self.node.Run("cat %s" % HTTP_DAEMON_LOGS[daemon],
                        check=False).stdout[since:]
    return re.findall(r"HTTP backend of %s: (\w+)" % daemon, log)

  def _CheckBackendSince(self, positions):
    """Each HTTP daemon started on the column's backend since C{positions}.

    On stock (or with the package removed) no shim line may appear.
    """
    for (daemon, since) in positions.items():
      lines = self._BackendLines(daemon, since)
      if self.column == "stock" or not self._PackageInstalled():
        if lines:
          raise CheckFailed("%s runs the shim (%s) without the package"
                            % (daemon, lines))
      elif lines[-1:] != [self.column]:
        raise CheckFailed("%s started on %s, not %s" % (daemon, lines or
                                                        "no shim", self.column))

  def _LastLogErrors(self):
    """The last line naming an error in each HTTP daemon's log."""
    found = []
    for (daemon, path) in sorted(HTTP_DAEMON_LOGS.items()):
      lines = [line for line in self.node.Run("cat %s" % path,
                                              check=False).stdout.splitlines()
               if re.search(r"Error|ERROR|denied", line)]
      if lines:
        found.append("%s: %s" % (daemon, lines[-1].strip()))
    return "".join("; " + line for line in found)

  def _LogPositions(self):
    return {daemon: self._LogLength(daemon) for daemon in HTTP_DAEMON_LOGS}

  def _PackageInstalled(self):
    status = self.node.Run("dpkg-query -W -f '${db:Status-Status}' %s"
                           % PACKAGE, check=False).stdout
    return status == "installed"

  # The checks

  def CheckInstallPackage(self):
    """Install the package as an operator would; flip every daemon."""
    if not self._packaged:
      return NOT_APPLICABLE
    self.node.CopyFile(self.deb_path, "/tmp/%s.deb" % PACKAGE)
    self._Run("dpkg -i /tmp/%s.deb" % PACKAGE)
    self._SetBackendSetting("backends", "default", self.column)
    return None

  def _SetBackendSetting(self, section, key, value):
    """Set one key in the package's flag file, as an operator edits it.

    The key's line in the section (also a commented-out one) is replaced;
    a key the section lacks is added under its header.
    """
    path = self.node.HostPath(BACKEND_CONFIG)
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

  def CheckClusterInit(self):
    """Set up the node and run gnt-cluster init."""
    self.node.WriteFile("/etc/hosts", (
      "127.0.0.1 localhost\n"
      "%s %s %s\n"
      "%s %s %s\n" % (NODE_ADDRESS, NODE_NAME, NODE_NAME.split(".")[0],
                      CLUSTER_ADDRESS, CLUSTER_NAME,
                      CLUSTER_NAME.split(".")[0])))
    self.node.WriteFile("/etc/hostname", NODE_NAME + "\n")
    self._WriteOsDefinition()
    self.node.WriteFile("/var/lib/ganeti/rapi/users",
                        "%s {CLEARTEXT}%s write\n" % (RAPI_USER,
                                                       RAPI_PASSWORD))
    self._Run("chown -R gnt-rapi:gnt-masterd /var/lib/ganeti/rapi &&"
              " chmod 0750 /var/lib/ganeti/rapi &&"
              " chmod 0640 /var/lib/ganeti/rapi/users && mkdir -p /run/ganeti")
    self._Run("gnt-cluster init --enabled-hypervisors=fake"
              " --enabled-disk-templates=diskless --master-netdev=v0"
              " --nic-parameters=link=br0 --no-ssh-init --no-etc-hosts %s"
              % CLUSTER_NAME, timeout=180)

  def _WriteOsDefinition(self):
    """A dummy OS definition whose scripts do nothing."""
    directory = "/srv/ganeti/os/%s" % OS_NAME
    self.node.WriteFile(directory + "/ganeti_api_version", "20\n")
    self.node.WriteFile(directory + "/variants.list", "")
    self.node.WriteFile(directory + "/parameters.list", "")
    for script in ("create", "import", "export", "rename", "verify"):
      self.node.WriteFile("%s/%s" % (directory, script), "#!/bin/sh\nexit 0\n",
                          mode=0o755)

  def CheckBackendInUse(self):
    """noded and rapi log the column's backend (stock: no shim at all)."""
    self._CheckBackendSince({daemon: 0 for daemon in HTTP_DAEMON_LOGS})
    lighttpds = self.node.Run("pidof lighttpd", check=False).stdout.split()
    if self.column == "fastcgi" and len(lighttpds) < len(HTTP_DAEMON_LOGS):
      raise CheckFailed("%d lighttpd processes, expected one per daemon"
                        % len(lighttpds))
    if self.column != "fastcgi" and lighttpds:
      raise CheckFailed("lighttpd runs on %s" % self.column)

  def CheckClusterVerify(self):
    """gnt-cluster verify reports nothing but the known environment errors."""
    output = self.node.Run("gnt-cluster verify", check=False,
                           timeout=180).stdout
    problems = [line for line in output.splitlines()
                if re.search(r"\b(ERROR|WARNING):", line)
                and not any(known.search(line)
                            for known in KNOWN_VERIFY_ERRORS)]
    if problems or "Verifying node status" not in output:
      raise CheckFailed("; ".join(problems) or _Tail(output))

  def CheckNodeInfo(self):
    """gnt-node list shows the node (with live data from noded); info too."""
    fields = self._Run("gnt-node list --no-headers --separator='|'"
                       " -o name,master_candidate,mtotal,dtotal").strip()
    (name, master_candidate, memory, _) = fields.split("|")
    if name != NODE_NAME or master_candidate != "Y" or not memory.isdigit():
      raise CheckFailed("gnt-node list: %s" % fields)
    info = self._Run("gnt-node info %s" % NODE_NAME)
    if "primary ip: %s" % NODE_ADDRESS not in info:
      raise CheckFailed("gnt-node info: %s" % _Tail(info))

  def _InstanceName(self):
    return "instance%d.example.com" % self._instance_count

  def _InstanceState(self):
    return self._Run("gnt-instance list --no-headers -o status %s"
                     % self._InstanceName()).strip()

  def _ExpectInstanceState(self, expected):
    state = self._InstanceState()
    if state != expected:
      raise CheckFailed("instance is %s, not %s" % (state, expected))

  def CheckInstanceAdd(self):
    self._instance_count += 1
    self._Run("gnt-instance add -t diskless -o %s --no-name-check"
              " --no-ip-check -n %s %s" % (OS_NAME, NODE_NAME,
                                           self._InstanceName()))
    self._ExpectInstanceState("running")

  def CheckInstanceShutdown(self):
    self._Run("gnt-instance shutdown %s" % self._InstanceName())
    self._ExpectInstanceState("ADMIN_down")

  def CheckInstanceStartup(self):
    self._Run("gnt-instance startup %s" % self._InstanceName())
    self._ExpectInstanceState("running")

  def CheckInstanceReboot(self):
    self._Run("gnt-instance reboot %s" % self._InstanceName())
    self._ExpectInstanceState("running")

  def CheckInstanceRemove(self):
    self._Run("gnt-instance remove -f %s" % self._InstanceName())
    names = self._Run("gnt-instance list --no-headers -o name")
    if self._InstanceName() in names.split():
      raise CheckFailed("the instance is still listed")

  def CheckRapiAuthentication(self):
    """Good credentials: 200; wrong password, unknown user, none: 401."""
    expected = [
      ("%s:%s" % (RAPI_USER, RAPI_PASSWORD), 200),
      ("%s:wrong-password" % RAPI_USER, 401),
      ("nobody:%s" % RAPI_PASSWORD, 401),
      (False, 401),
    ]
    for (credentials, status) in expected:
      (answer, body) = self._Rapi("GET", "/2/info", credentials=credentials)
      if answer != status:
        raise CheckFailed("GET /2/info with %s: %d, expected %d: %s"
                          % (credentials or "no credentials", answer, status,
                             body[:200]))
    (answer, body) = self._Rapi("GET", "/2/info")
    if json.loads(body).get("name") != CLUSTER_NAME:
      raise CheckFailed("GET /2/info: %s" % body[:200])

  def CheckRapiJob(self):
    """Create an instance through RAPI, then remove it (two jobs)."""
    self._instance_count += 1
    (status, body) = self._Rapi("POST", "/2/instances", body={
      "__version__": 1, "mode": "create", "name": self._InstanceName(),
      "disk_template": "diskless", "disks": [], "nics": [{}],
      "os_type": OS_NAME, "pnode": NODE_NAME, "name_check": False,
      "ip_check": False})
    if status != 200:
      raise CheckFailed("POST /2/instances answered %d: %s" % (status, body))
    self._WaitRapiJob(json.loads(body))
    self._ExpectInstanceState("running")
    (status, body) = self._Rapi("DELETE", "/2/instances/%s"
                                % self._InstanceName())
    if status != 200:
      raise CheckFailed("DELETE answered %d: %s" % (status, body))
    self._WaitRapiJob(json.loads(body))

  def CheckDelayRpc(self):
    """A delay RPC on the node daemon, waited for and through a job."""
    self._Run("gnt-debug delay --no-master -n %s 2" % NODE_NAME)
    self._WaitJob(self._SubmitJob("gnt-debug delay --submit --no-master -n %s 3"
                                  % NODE_NAME))

  def CheckRestartDuringRpc(self):
    """noded stopped and started while it serves a delay RPC.

    As on stock Ganeti 3.0, the stop must not wait for the RPC (it would
    hang the init script) and the RPC's job must still succeed.
    """
    job_id = self._SubmitJob("gnt-debug delay --submit --no-master -n %s 10"
                             % NODE_NAME)
    self._WaitJobRunning(job_id)
    time.sleep(1)
    started = time.monotonic()
    self._DaemonUtil("stop", "ganeti-noded")
    stop_seconds = time.monotonic() - started
    status = self._Run("gnt-job list --no-headers -o status %s"
                       % job_id).strip()
    self._DaemonUtil("start", "ganeti-noded")
    if status != "running":
      raise CheckFailed("daemon-util stop waited for the delay RPC to end"
                        " (%.0f s; job %s: %s)" % (stop_seconds, job_id,
                                                    status))
    self._WaitJob(job_id)
    self._CheckClusterWorks()

  def CheckRequestLogLines(self):
    """Each daemon logs a line per request, as stock Ganeti 3.0 does."""
    expected = {"noded": "/test_delay", "rapi": "/2/info"}
    for (daemon, path) in expected.items():
      log = self._Run("cat %s" % HTTP_DAEMON_LOGS[daemon])
      if not re.search(r"\b(GET|POST|PUT|DELETE) %s\b" % re.escape(path),
                       log):
        raise CheckFailed("no request line for %s in %s" % (
          path, HTTP_DAEMON_LOGS[daemon]))

  def _WaitJobRunning(self, job_id, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
      status = self._Run("gnt-job list --no-headers -o status %s"
                         % job_id).strip()
      if status == "running":
        return
      if status not in ("queued", "waiting"):
        raise CheckFailed("job %s is %s" % (job_id, status))
      time.sleep(0.2)
    raise CheckFailed("job %s did not start" % job_id)

  def CheckDaemonRestarts(self):
    """Stop and start every running Ganeti daemon with daemon-util."""
    daemons = self._RunningDaemons()
    if "ganeti-noded" not in daemons or "ganeti-rapi" not in daemons:
      raise CheckFailed("running daemons: %s" % daemons)
    positions = self._LogPositions()
    for daemon in daemons:
      self._DaemonUtil("stop", daemon)
      self._DaemonUtil("start", daemon)
      self._CheckClusterWorks()
    self._CheckBackendSince(positions)

  def CheckReboot(self):
    """stop-all, every process gone, /run emptied, init script start."""
    daemons = self._RunningDaemons()
    self._DaemonUtil("stop-all")
    left = self._Run("ps -e --no-headers -o pid=,args= | awk '$1 != 1'")
    left = [line for line in left.splitlines()
            if not re.search(r"\b(ps|awk|sh) ", line + " ")]
    if left:
      raise CheckFailed("stop-all left processes: %s" % "; ".join(left))
    self._Run("find /run -mindepth 1 -maxdepth 1 -exec rm -rf {} + &&"
              " mkdir -m 1777 /run/lock")
    positions = self._LogPositions()
    output = self._Run("/etc/init.d/ganeti start",
                       timeout=DAEMON_UTIL_TIMEOUT * 3)
    missing = sorted(set(daemons) - set(self._RunningDaemons()))
    if missing:
      raise CheckFailed("not running after the init script: %s (%s)%s"
                        % (", ".join(missing), _Tail(output),
                           self._LastLogErrors()))
    self._CheckBackendSince(positions)
    self._CheckClusterWorks()

  def CheckReadmeSettings(self):
    """The README's [fastcgi] example: processes = 2, sendfile dirs.

    The package's settings are put back afterwards (noded and rapi
    restarted), so that the later rows do not depend on this one.
    """
    self._Run("mkdir -p /srv/ganeti/export")
    config_path = self.node.HostPath(BACKEND_CONFIG)
    original = open(config_path).read() if self._packaged else None
    if self._packaged:
      for (key, value) in README_FASTCGI_SETTINGS:
        self._SetBackendSetting("fastcgi", key, value)
    try:
      positions = self._LogPositions()
      self._RestartHttpDaemons()
      self._CheckBackendSince(positions)
      self._CheckClusterWorks()
      self._WaitJob(self._SubmitJob("gnt-debug delay --submit --no-master"
                                    " -n %s 1" % NODE_NAME))
    except Exception:
      self._PutBackConfig(config_path, original, quiet=True)
      raise
    self._PutBackConfig(config_path, original)

  def _PutBackConfig(self, config_path, original, quiet=False):
    """Write back the flag file's C{original} text (None: nothing to do)
    and restart noded and rapi; C{quiet}: ignore a failed restart."""
    if original is None:
      return
    with open(config_path, "w") as config:
      config.write(original)
    try:
      self._RestartHttpDaemons()
    except (CheckFailed, subprocess.TimeoutExpired):
      if not quiet:
        raise

  def CheckGanetiReinstall(self):
    """dpkg -i of Ganeti's own .deb; the daemons keep their backend."""
    self._Run("dpkg -i /var/cache/apt/archives/ganeti-3.0_*.deb",
              timeout=180)
    positions = self._LogPositions()
    self._RestartHttpDaemons()
    self._CheckBackendSince(positions)
    self._CheckClusterWorks()

  def CheckPackageRemoval(self):
    """dpkg --purge: Ganeti's files back byte for byte, cluster on stock."""
    if not self._packaged:
      return NOT_APPLICABLE
    self._Run("dpkg --purge %s" % PACKAGE, timeout=180)
    changed = self._Run("dpkg --verify ganeti-3.0 || true")
    if changed.strip():
      raise CheckFailed("Ganeti's files differ from its .deb: %s" % changed)
    positions = self._LogPositions()
    self._RestartHttpDaemons()
    self._CheckBackendSince(positions)
    self._CheckClusterWorks()
    return None

  def CheckJobsSucceeded(self):
    """gnt-job list: every job of the whole run succeeded."""
    jobs = self._Run("gnt-job list --no-headers -o id,summary,status")
    failed = [line for line in jobs.splitlines()
              if line.split()[-1] != "success"]
    if failed or not jobs.strip():
      raise CheckFailed("; ".join(failed) or "no jobs")


def _Tail(text, limit=600):
  """The end of a command's output, on one line."""
  return " | ".join(text.strip().splitlines())[-limit:]


def FormatTable(outcomes_by_column):
  """A text table: one row per check, one column per column run.

  @param outcomes_by_column: {column: [(title, outcome), ...]}
  """
  columns = [c for c in COLUMNS if c in outcomes_by_column]
  titles = [title for (title, _) in outcomes_by_column[columns[0]]]
  cells = {c: dict(outcomes_by_column[c]) for c in columns}
  short = lambda outcome: "FAIL" if outcome.startswith("FAIL") else outcome
  width = max(len(t) for t in titles)
  lines = ["%-*s  %s" % (width, "check", "  ".join("%-8s" % c
                                                  for c in columns))]
  for title in titles:
    lines.append("%-*s  %s" % (width, title, "  ".join(
      "%-8s" % short(cells[c].get(title, NOT_RUN)) for c in columns)))
  for column in columns:
    for (title, outcome) in outcomes_by_column[column]:
      if outcome.startswith("FAIL"):
        lines.append("%s / %s: %s" % (column, title, outcome))
  return "\n".join(lines)
