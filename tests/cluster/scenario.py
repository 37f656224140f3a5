"""The checks the test bed runs on one node, for one column of the table.

A column is how the node's HTTP layer is set up: C{stock} (Debian's
Ganeti 3.0 as packaged), C{legacy} or C{fastcgi} (this project's Debian
package installed with C{dpkg -i} and every daemon flipped to that backend
in C{/etc/ganeti/http-backend.conf} before the cluster is initialised).
Every check is what an operator does with Ganeti's own commands; the outcome
of each is C{"pass"}, C{"n/a"} (the check is about the package and the
column has none), or C{"FAIL: "} and the reason.
"""

import json
import re
import subprocess
import time

from tests.cluster import documented_commands
from tests.cluster import ganeti_commands
from tests.cluster import migration_load
from tests.cluster import ssh_setup
from tests.cluster.ganeti_commands import CheckFailed, Tail

COLUMNS = ("stock", "legacy", "fastcgi")

PASS = "pass"
NOT_APPLICABLE = "n/a"
NOT_RUN = "not run"
FAIL_PREFIX = "FAIL: "

NODE_NAME = "node1.example.com"
NODE_ADDRESS = "192.0.2.11"
CLUSTER_NAME = "cluster.example.com"
CLUSTER_ADDRESS = "192.0.2.10"

PACKAGE = "ganeti-http-shim"
BACKEND_CONFIG = "/etc/ganeti/http-backend.conf"
GANETI_DEB = "/var/cache/apt/archives/ganeti-3.0_*.deb"
OS_NAME = "testbed"
RAPI_USER = "testbed"
RAPI_PASSWORD = "testbed-secret"
HTTP_DAEMONS = ("ganeti-noded", "ganeti-rapi")
NODED_PORT = 1811
#: Seconds a request's log line may take to appear (lighttpd writes its
#: access log every fourth second).
REQUEST_LOG_WAIT = 10
#: Seconds of the delay RPC in flight while noded restarts.
RESTART_RPC_SECONDS = 10
FIREWALL_TABLE = "inet ganeti-http"
FIREWALL_FILE = "/etc/nftables.d/ganeti-http.nft"
FIREWALL_UNIT = "/etc/systemd/system/ganeti-http-firewall.service"
NFTABLES_CONF = "/etc/nftables.conf"

#: C{gnt-cluster verify} errors this environment causes whatever the HTTP
#: layer: the master IP that verify cannot reach inside the namespace, and
#: a kernel without magic SysRq (no /proc/sysrq-trigger).
KNOWN_VERIFY_ERRORS = (
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
    self.gnt = ganeti_commands.GanetiCommands(
      node, "%s:%s" % (RAPI_USER, RAPI_PASSWORD))
    self._instance_count = 0
    #: {title: what a check measured}, printed under the table
    self.figures = {}

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
      ("noded restarted during a delay RPC", self.CheckRestartDuringRpc),
      ("each daemon restarted (daemon-util)", self.CheckDaemonRestarts),
      ("docs/operations.md by hand (gnt-cluster copyfile, command)",
       self.CheckOperatorProcedure),
      ("ganeti-http firewall (nftables)", self.CheckFirewall),
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
      outcomes.append((title, _Outcome(check)))
      if check == self.CheckClusterInit and outcomes[-1][1] != PASS:
        cluster_up = False
    return outcomes

  # What several checks share

  def _CheckClusterWorks(self):
    """The short proof that RPC and RAPI work: used after each disruption."""
    self.gnt.Run("gnt-node list --no-headers -o name,master_candidate")
    self.gnt.Run("gnt-debug delay --no-master -n %s 0.1" % NODE_NAME)
    (status, body) = self.gnt.Rapi("GET", "/2/info")
    if status != 200:
      raise CheckFailed("RAPI GET /2/info answered %d: %s" % (status, body))

  def _CheckBackendSince(self, positions):
    """Each HTTP daemon started on the column's backend since C{positions}
    (from L{GanetiCommands.LogPositions}); without the package, no daemon
    may log the package's line."""
    packaged = self._packaged and self.gnt.PackageInstalled(PACKAGE)
    for (daemon, since) in positions.items():
      lines = self.gnt.BackendLines(daemon, since)
      if not packaged and lines:
        raise CheckFailed("%s runs the package (%s) without it installed"
                          % (daemon, lines))
      if packaged and lines[-1:] != [self.column]:
        raise CheckFailed("%s started on %s, not %s"
                          % (daemon, lines or "Ganeti's HTTP", self.column))

  def _RestartHttpDaemonsOnBackend(self):
    """Restart noded and rapi; check they run the expected backend."""
    positions = self.gnt.LogPositions()
    self.gnt.RestartDaemons(*HTTP_DAEMONS)
    self._CheckBackendSince(positions)

  def _InstanceName(self):
    return "instance%d.example.com" % self._instance_count

  def _ExpectInstanceState(self, expected):
    state = self.gnt.Run("gnt-instance list --no-headers -o status %s"
                         % self._InstanceName()).strip()
    if state != expected:
      raise CheckFailed("instance is %s, not %s" % (state, expected))

  # The checks

  def CheckInstallPackage(self):
    """Install the package as an operator would; flip every daemon."""
    if not self._packaged:
      return NOT_APPLICABLE
    self.node.CopyFile(self.deb_path, "/tmp/%s.deb" % PACKAGE)
    self.gnt.Run("dpkg -i /tmp/%s.deb" % PACKAGE)
    self.gnt.Run("ganeti-http set default %s" % self.column)
    return PASS

  def CheckClusterInit(self):
    """Name the node, add the OS and RAPI user; gnt-cluster init."""
    self.node.WriteFile("/etc/hosts", "".join(
      "%s %s %s\n" % (address, name, name.split(".")[0])
      for (address, name) in (("127.0.0.1", "localhost"),
                              (NODE_ADDRESS, NODE_NAME),
                              (CLUSTER_ADDRESS, CLUSTER_NAME))))
    self.node.WriteFile("/etc/hostname", NODE_NAME + "\n")
    self._WriteOsDefinition()
    self.node.WriteFile("/var/lib/ganeti/rapi/users",
                        "%s {CLEARTEXT}%s write\n" % (RAPI_USER,
                                                       RAPI_PASSWORD))
    self.gnt.Run("chown -R gnt-rapi:gnt-masterd /var/lib/ganeti/rapi &&"
                 " chmod 0750 /var/lib/ganeti/rapi &&"
                 " chmod 0640 /var/lib/ganeti/rapi/users &&"
                 " mkdir -p /run/ganeti")
    self.gnt.Run("gnt-cluster init --enabled-hypervisors=fake"
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
      self.node.WriteFile("%s/%s" % (directory, script),
                          "#!/bin/sh\nexit 0\n", mode=0o755)

  def CheckBackendInUse(self):
    """noded and rapi log the column's backend (stock: no package line);
    lighttpd runs in front of each on fastcgi only."""
    self._CheckBackendSince({daemon: 0
                             for daemon in ganeti_commands.HTTP_DAEMON_LOGS})
    lighttpds = self.node.Run("pidof lighttpd", check=False).stdout.split()
    if self.column == "fastcgi" and len(lighttpds) < len(HTTP_DAEMONS):
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
      raise CheckFailed("; ".join(problems) or Tail(output))

  def CheckNodeInfo(self):
    """gnt-node list shows the node (with live data from noded); info too."""
    fields = self.gnt.Run("gnt-node list --no-headers --separator='|'"
                          " -o name,master_candidate,mtotal").strip()
    (name, master_candidate, memory) = fields.split("|")
    if name != NODE_NAME or master_candidate != "Y" or not memory.isdigit():
      raise CheckFailed("gnt-node list: %s" % fields)
    info = self.gnt.Run("gnt-node info %s" % NODE_NAME)
    if "primary ip: %s" % NODE_ADDRESS not in info:
      raise CheckFailed("gnt-node info: %s" % Tail(info))

  def CheckInstanceAdd(self):
    self._instance_count += 1
    self.gnt.Run("gnt-instance add -t diskless -o %s --no-name-check"
                 " --no-ip-check -n %s %s" % (OS_NAME, NODE_NAME,
                                              self._InstanceName()))
    self._ExpectInstanceState("running")

  def CheckInstanceShutdown(self):
    self.gnt.Run("gnt-instance shutdown %s" % self._InstanceName())
    self._ExpectInstanceState("ADMIN_down")

  def CheckInstanceStartup(self):
    self.gnt.Run("gnt-instance startup %s" % self._InstanceName())
    self._ExpectInstanceState("running")

  def CheckInstanceReboot(self):
    self.gnt.Run("gnt-instance reboot %s" % self._InstanceName())
    self._ExpectInstanceState("running")

  def CheckInstanceRemove(self):
    self.gnt.Run("gnt-instance remove -f %s" % self._InstanceName())
    names = self.gnt.Run("gnt-instance list --no-headers -o name")
    if self._InstanceName() in names.split():
      raise CheckFailed("the instance is still listed")

  def CheckRapiAuthentication(self):
    """Good credentials: 200; wrong password, unknown user, none: 401."""
    expected = [
      (None, 200),
      ("%s:wrong-password" % RAPI_USER, 401),
      ("nobody:%s" % RAPI_PASSWORD, 401),
      (False, 401),
    ]
    for (credentials, status) in expected:
      (answer, body) = self.gnt.Rapi("GET", "/2/info",
                                     credentials=credentials)
      if answer != status:
        raise CheckFailed("GET /2/info with %s: %d, expected %d: %s"
                          % (credentials or "the right or no credentials",
                             answer, status, body[:200]))
      if status == 200 and json.loads(body).get("name") != CLUSTER_NAME:
        raise CheckFailed("GET /2/info: %s" % body[:200])

  def CheckRapiJob(self):
    """Create an instance through RAPI, then remove it (two jobs)."""
    self._instance_count += 1
    (status, body) = self.gnt.Rapi("POST", "/2/instances", body={
      "__version__": 1, "mode": "create", "name": self._InstanceName(),
      "disk_template": "diskless", "disks": [], "nics": [{}],
      "os_type": OS_NAME, "pnode": NODE_NAME, "name_check": False,
      "ip_check": False})
    if status != 200:
      raise CheckFailed("POST /2/instances answered %d: %s" % (status, body))
    self.gnt.WaitRapiJob(json.loads(body))
    self._ExpectInstanceState("running")
    (status, body) = self.gnt.Rapi("DELETE", "/2/instances/%s"
                                   % self._InstanceName())
    if status != 200:
      raise CheckFailed("DELETE answered %d: %s" % (status, body))
    self.gnt.WaitRapiJob(json.loads(body))

  def CheckDelayRpc(self):
    """A delay RPC on the node daemon, waited for and through a job."""
    self.gnt.Run("gnt-debug delay --no-master -n %s 2" % NODE_NAME)
    self.gnt.WaitJob(self.gnt.SubmitJob(
      "gnt-debug delay --submit --no-master -n %s 3" % NODE_NAME))

  def CheckRequestLogLines(self):
    """Each daemon logs a line per request, as stock Ganeti 3.0 does (on
    fastcgi read from lighttpd's access log, which lighttpd writes every
    fourth second: looked for during L{REQUEST_LOG_WAIT} seconds)."""
    expected = {"noded": "/test_delay", "rapi": "/2/info"}
    for (daemon, path) in expected.items():
      line = re.compile(r"\b(GET|POST|PUT|DELETE) %s\b" % re.escape(path))
      deadline = time.monotonic() + REQUEST_LOG_WAIT
      while not line.search(self.gnt.DaemonLog(daemon)):
        if time.monotonic() > deadline:
          raise CheckFailed("no request line for %s in %s" % (
            path, ganeti_commands.HTTP_DAEMON_LOGS[daemon]))
        time.sleep(0.5)

  def CheckRestartDuringRpc(self):
    """noded stopped and started (daemon-util) while it serves a 10 s delay
    RPC, and while a client sends it requests one after another.

    As on stock Ganeti 3.0 (whose noded serves each connection in a forked
    child), the stop must not wait for the RPC (daemon-util kills a daemon
    still there after 30 s): it returns while the RPC runs, and the RPC's
    job must still succeed.  With the package, no connection may be refused
    meanwhile (the listening socket is passed on) and every request is
    answered; stock Ganeti refuses connections until the new noded has
    bound its port.  The figures go under the table.
    """
    job_id = self.gnt.SubmitJob("gnt-debug delay --submit --no-master -n"
                                " %s %d" % (NODE_NAME, RESTART_RPC_SECONDS))
    self.gnt.WaitJobRunning(job_id)
    self._WaitNodedConnection()  # the RPC's (the client's come next)
    load = migration_load.Load()
    load.Start(self.node, "answers", "%s:%d" % (NODE_ADDRESS, NODED_PORT))
    try:
      self._WaitForAnswers(load)
      started = time.monotonic()
      self.gnt.DaemonUtil("stop", "ganeti-noded")
      stop_seconds = time.monotonic() - started
      status = self.gnt.JobStatus(job_id)
      self.gnt.DaemonUtil("start", "ganeti-noded")
      restarted = time.time()
      self._WaitForAnswers(load, since=restarted)
      if status != "running":
        raise CheckFailed("daemon-util stop waited for the delay RPC to end"
                          " (%.0f s; job %s: %s)" % (stop_seconds, job_id,
                                                      status))
      self.gnt.WaitJob(job_id)
    finally:
      load.Stop()
    (refused_for, longest_wait, failed) = _Interruption(load.events)
    self.figures["noded restarted during a delay RPC"] = (
      "stop %.2f s, the RPC's job succeeded, connections refused for %.2f s"
      " (longest stretch), longest wait for an answer %.2f s, %d requests,"
      " %d failed" % (stop_seconds, refused_for, longest_wait,
                      len(load.events), len(failed)))
    if self._packaged and (refused_for or failed):
      raise CheckFailed("noded refused connections for %.2f s during the"
                        " restart; failed requests: %s"
                        % (refused_for, failed[:3]))
    self._CheckClusterWorks()

  @staticmethod
  def _WaitForAnswers(load, since=0, timeout=60):
    """Wait until the driver has had an answer after C{since} (time.time)."""
    deadline = time.monotonic() + timeout
    while not any(event["kind"] == "answer" and event["ok"] and
                  event["t"] > since for event in list(load.events)):
      if time.monotonic() > deadline or load.Dead():
        raise CheckFailed("no answer from noded's port: %s"
                          % (load.Dead() or list(load.events)[-3:]))
      time.sleep(0.1)

  def _WaitNodedConnection(self, timeout=30):
    """Wait until a client has a connection to noded's port (the RPC)."""
    deadline = time.monotonic() + timeout
    while not self.gnt.Run("ss -Htn state established '( dport = :%d )'"
                           % NODED_PORT).strip():
      if time.monotonic() > deadline:
        raise CheckFailed("no connection to noded's port %d" % NODED_PORT)
      time.sleep(0.1)
    time.sleep(0.5)  # margin for noded to accept it and read the request

  def CheckDaemonRestarts(self):
    """Stop and start every running Ganeti daemon with daemon-util."""
    daemons = self.gnt.RunningDaemons()
    if not set(HTTP_DAEMONS) <= set(daemons):
      raise CheckFailed("running daemons: %s" % daemons)
    positions = self.gnt.LogPositions()
    for daemon in daemons:
      try:
        self.gnt.RestartDaemons(daemon)
        self._CheckClusterWorks()
      except CheckFailed as err:
        raise CheckFailed("after restarting %s: %s" % (daemon, err))
    self._CheckBackendSince(positions)

  def CheckOperatorProcedure(self):
    """docs/operations.md's migration by hand, on the one node: noded and
    RAPI to the other backend and back (the flag file set on the master,
    distributed with gnt-cluster copyfile, noded restarted and checked
    through gnt-cluster command), then one C{default} line for both.

    The commands are the document's (test_operations_doc_commands_ran
    checks that); on legacy the flip is the document's flip and the
    return its rollback, on fastcgi the other way round.
    """
    if not self._packaged:
      return NOT_APPLICABLE
    self._ExpectOutput("ganeti-http check", "no problem found")
    other = "legacy" if self.column == "fastcgi" else "fastcgi"
    for backend in (other, self.column):
      self.gnt.Run("ganeti-http set noded %s" % backend)
      if backend == "fastcgi":
        self._ExpectOutput("ganeti-http config noded", "fastcgi.server")
      self._ExpectOutput("ganeti-http check noded", "no problem found")
      self.gnt.Run("gnt-cluster copyfile %s" % BACKEND_CONFIG)
      self._ExpectOutput("ganeti-http status noded", "restart needed")
      self._ExpectOutput(
        "gnt-cluster command -n %s \"%s stop ganeti-noded && %s start"
        " ganeti-noded\"" % (NODE_NAME, ganeti_commands.DAEMON_UTIL,
                             ganeti_commands.DAEMON_UTIL), "return code = 0")
      status = self._ExpectOutput("gnt-cluster command -n %s ganeti-http"
                                  " status noded" % NODE_NAME,
                                  "running:    %s " % backend)
      if "restart needed" in status:
        raise CheckFailed("after the restart: %s" % Tail(status))
      self.gnt.Run("ganeti-http set rapi %s --restart" % backend)
      self._ExpectOutput("ganeti-http status rapi", "running:    %s "
                         % backend)
      self._CheckClusterWorks()
      if backend == other:
        self.CheckClusterVerify()
        self.gnt.Run("gnt-job list")
    self._ExpectOutput("tail /var/log/ganeti/lighttpd-noded.log",
                       "lighttpd| ")
    self._ExpectOutput("grep \"HTTP backend of\" %s"
                       % ganeti_commands.HTTP_DAEMON_LOGS["noded"],
                       "HTTP backend of noded: %s" % self.column)
    self.gnt.Run("ganeti-http set default %s" % self.column)
    self.gnt.Run("ganeti-http unset noded")
    self.gnt.Run("ganeti-http unset rapi")
    self.gnt.Run("gnt-cluster copyfile %s" % BACKEND_CONFIG)
    status = self.gnt.Run("ganeti-http status")
    if "restart needed" in status or status.count(
        "running:    %s " % self.column) != len(HTTP_DAEMONS):
      raise CheckFailed("ganeti-http status: %s" % Tail(status))
    return PASS

  def CheckFirewall(self):
    """docs/operations.md's per-address limit: printed, loaded now and
    removed, then each way of loading it at boot (a unit of its own, the
    include in Debian's nftables.conf), each file as the document shows
    it.  After each load the table is there and RPC and RAPI work; the
    last one stays loaded for the rows after this one.

    systemd does not run in the node: C{systemctl enable} works without
    it, and the C{nft -f} the unit or nftables.service would run at boot
    is run by hand.
    """
    if not self._packaged:
      return NOT_APPLICABLE
    self._ExpectOutput("ganeti-http firewall", "ct count over 512 ")
    self._ExpectOutput("ganeti-http firewall noded --max-per-address 1024",
                       "ct count over 1024 ")
    self.gnt.Run("ganeti-http firewall | nft -f -")
    self._CheckFirewallLoaded()
    self._ExpectOutput("nft list set %s noded-ipv4" % FIREWALL_TABLE,
                       "set noded-ipv4")
    self.gnt.Run("nft delete table %s" % FIREWALL_TABLE)
    if self.node.Run("nft list table %s" % FIREWALL_TABLE,
                     check=False).returncode == 0:
      raise CheckFailed("the table is still there after nft delete table")
    self.gnt.Run("mkdir -p /etc/nftables.d")
    self.gnt.Run("ganeti-http firewall > %s" % FIREWALL_FILE)
    self.node.WriteFile(FIREWALL_UNIT, documented_commands.TextBlock("[Unit]"))
    self.gnt.Run("systemctl enable ganeti-http-firewall.service")
    self.gnt.Run("nft -f %s" % FIREWALL_FILE)
    self._CheckFirewallLoaded()
    self.gnt.Run("systemctl disable ganeti-http-firewall.service")
    with open(self.node.HostPath(NFTABLES_CONF), "a") as conf:
      conf.write(documented_commands.TextBlock(
        'include "%s"' % FIREWALL_FILE))
    self.gnt.Run("nft -c -f %s" % NFTABLES_CONF)
    self.gnt.Run("systemctl enable nftables.service")
    self.gnt.Run("nft -f %s" % NFTABLES_CONF)
    self._CheckFirewallLoaded()
    self._ExpectOutput("systemctl is-enabled nftables.service", "enabled")

  def _CheckFirewallLoaded(self):
    """The table is loaded (as printed) and the node still answers."""
    self._ExpectOutput("nft list table %s" % FIREWALL_TABLE,
                       "ct count over 512 } reject with tcp reset")
    self._CheckClusterWorks()

  def _ExpectOutput(self, command, expected):
    """Run C{command}; fail unless its output contains C{expected}."""
    output = self.gnt.Run(command)
    if expected not in output:
      raise CheckFailed("%s: no %r in: %s" % (command, expected,
                                              Tail(output)))
    return output

  def CheckReadmeSettings(self):
    """The README's [fastcgi] example: processes = 2, sendfile dirs.

    The package's settings are put back afterwards (noded and rapi
    restarted), so that the later rows do not depend on this one.
    """
    self.gnt.Run("mkdir -p /srv/ganeti/export")
    config_path = self.node.HostPath(BACKEND_CONFIG)
    original = open(config_path).read() if self._packaged else None
    for (key, value) in README_FASTCGI_SETTINGS if self._packaged else ():
      ganeti_commands.SetConfigKey(config_path, "fastcgi", key, value)
    try:
      self._RestartHttpDaemonsOnBackend()
      self._CheckClusterWorks()
      self.gnt.WaitJob(self.gnt.SubmitJob(
        "gnt-debug delay --submit --no-master -n %s 1" % NODE_NAME))
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
      self.gnt.RestartDaemons(*HTTP_DAEMONS)
    except (CheckFailed, subprocess.TimeoutExpired):
      if not quiet:
        raise

  def CheckGanetiReinstall(self):
    """dpkg -i of Ganeti's own .deb; the daemons keep their backend."""
    self.gnt.Run("dpkg -i %s" % GANETI_DEB, timeout=180)
    self._RestartHttpDaemonsOnBackend()
    self._CheckClusterWorks()

  def CheckReboot(self):
    """stop-all, every process gone, /run emptied, boot-time tmpfiles.d,
    init script start."""
    daemons = self.gnt.RunningDaemons()
    self.gnt.Run(ssh_setup.STOP_SSHD)
    self.gnt.DaemonUtil("stop-all")
    left = [line for line in self._Processes()
            if not re.match(r"\d+ \S+-keeper ", line)]
    if left:
      raise CheckFailed("stop-all left processes: %s" % "; ".join(left))
    self.gnt.Run("find /run -mindepth 1 -maxdepth 1 -exec rm -rf {} +")
    # The keepers of the stopped daemons' listening sockets (with the
    # package) exit once their names under /run are gone.
    deadline = time.monotonic() + 5
    while self._Processes():
      if time.monotonic() > deadline:
        raise CheckFailed("processes left after /run was emptied: %s"
                          % "; ".join(self._Processes()))
      time.sleep(0.1)
    # What a Debian 12 boot does before the init scripts run
    # (systemd-tmpfiles-setup.service); its status is not the package's.
    self.node.Run("systemd-tmpfiles --create --boot", check=False)
    self.gnt.Run(ssh_setup.START_SSHD)
    positions = self.gnt.LogPositions()
    output = self.gnt.Run("/etc/init.d/ganeti start",
                          timeout=ganeti_commands.DAEMON_UTIL_TIMEOUT * 3)
    missing = sorted(set(daemons) - set(self.gnt.RunningDaemons()))
    if missing:
      raise CheckFailed("not running after the init script: %s (%s) %s"
                        % (", ".join(missing), Tail(output),
                           self.gnt.LastLogErrors()))
    self._CheckBackendSince(positions)
    self._CheckClusterWorks()

  def _Processes(self):
    """C{pid comm args} of the node's processes but init, ps and sh."""
    return [line.strip() for line in self.gnt.Run(
              "ps -e --no-headers -o pid=,comm=,args=").splitlines()
            if line.split()[0] != "1" and not re.match(r"\d+ (ps|sh) ",
                                                        line.strip())]

  def CheckPackageRemoval(self):
    """dpkg --purge: Ganeti's files back byte for byte, cluster on stock."""
    if not self._packaged:
      return NOT_APPLICABLE
    self.gnt.Run("dpkg --purge %s" % PACKAGE, timeout=180)
    changed = self.gnt.Run("dpkg --verify ganeti-3.0 || true")
    if changed.strip():
      raise CheckFailed("Ganeti's files differ from its .deb: %s" % changed)
    self._RestartHttpDaemonsOnBackend()
    self._CheckClusterWorks()
    return PASS

  def CheckJobsSucceeded(self):
    """gnt-job list: every job of the whole run succeeded."""
    jobs = self.gnt.Run("gnt-job list --no-headers -o id,summary,status")
    failed = [line for line in jobs.splitlines()
              if line.split()[-1] != "success"]
    if failed or not jobs.strip():
      raise CheckFailed("; ".join(failed) or "no jobs")


def _Interruption(events):
  """From the C{answers} driver's lines: the longest stretch (s) from a
  refused connection to the next answer, the longest time a request took
  to be answered, and the failed requests (neither answered nor refused)."""
  refused_for = 0.0
  refused_since = None
  longest_wait = 0.0
  failed = []
  for event in sorted(events, key=lambda event: event["t"]):
    if event["kind"] == "refused":
      if refused_since is None:
        refused_since = event["t"]
      continue
    if refused_since is not None:
      refused_for = max(refused_for, event["t"] - refused_since)
      refused_since = None
    if event["ok"]:
      longest_wait = max(longest_wait, event["dt"])
    else:
      failed.append(event.get("detail"))
  return (refused_for, longest_wait, failed)


def _Outcome(check):
  """Run one check; its outcome as the table shows it."""
  try:
    return check() or PASS
  except CheckFailed as err:
    return FAIL_PREFIX + str(err)
  except subprocess.TimeoutExpired as err:
    return FAIL_PREFIX + "hung: %r did not end within %s s" % (err.cmd[-1],
                                                               err.timeout)
  except Exception as err:  # pylint: disable=broad-except
    return FAIL_PREFIX + "%s: %s" % (err.__class__.__name__, err)
