"""A three-node Ganeti cluster in the test bed, joined with C{gnt-node add}.

Each node is a test-bed L{node.Node} (its own namespaces and copy of the
root).  A L{Switch} is one more network namespace, made by the test, with a
bridge; every node's C{v0} is re-made as a veth pair whose other end is a
port of that bridge, so the nodes reach each other on 192.0.2.0/24 and
nothing else (no link or address is added to the machine's namespace).

Ganeti 3.0's C{gnt-node add} logs into the new node as root with ssh (it
runs C{node-daemon-setup} there), so every node runs C{sshd} with keys the
test generates (L{tests.cluster.ssh_setup}).
"""

import subprocess

from tests.cluster import ganeti_commands
from tests.cluster import ssh_setup
from tests.cluster.node import Node

CLUSTER_NAME = "cluster.example.com"
CLUSTER_ADDRESS = "192.0.2.10"
DOMAIN = "example.com"
OS_NAME = "testbed"
RAPI_USER = "testbed"
RAPI_PASSWORD = "testbed-secret"
PACKAGE = "ganeti-http-shim"
BACKEND_CONFIG = "/etc/ganeti/http-backend.conf"
RAPI_ARGS = "-b 0.0.0.0 --require-authentication"

#: Short names and addresses of the nodes; the first is the master.
NODES = (("node1", "192.0.2.11"), ("node2", "192.0.2.12"),
         ("node3", "192.0.2.13"))


def FullName(short_name):
  return "%s.%s" % (short_name, DOMAIN)


class Switch(object):
  """A network namespace of its own holding bridge C{br0}.

  Its only process is a shell sleeping until L{Stop} kills it; the
  namespace, the bridge and every veth end in it go with that process.
  """

  def __init__(self):
    self._process = subprocess.Popen(
      ["unshare", "--net", "--", "sh", "-c",
       "ip link set lo up && ip link add br0 type bridge &&"
       " ip link set br0 up && echo ready && exec sleep infinity"],
      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, start_new_session=True)
    if self._process.stdout.readline() != b"ready\n":
      error = self._process.stderr.read().decode(errors="replace")
      self.Stop()
      raise RuntimeError("the switch namespace did not start: %s" % error)
    self.pid = self._process.pid

  def Connect(self, node, port_name):
    """Replace the node's C{v0} by a veth pair into this bridge's port
    C{port_name}, with the node's address on C{v0}."""
    def InNode(*command):
      subprocess.run(["nsenter", "--target", str(node.init_pid), "--net",
                      "--"] + list(command), check=True)
    InNode("ip", "link", "del", "v0")
    InNode("ip", "link", "add", "v0", "type", "veth", "peer", "name",
           port_name, "netns", str(self.pid))
    InNode("ip", "address", "add", node.address + "/24", "dev", "v0")
    InNode("ip", "link", "set", "v0", "up")
    subprocess.run(["nsenter", "--target", str(self.pid), "--net", "--",
                    "ip", "link", "set", port_name, "master", "br0", "up"],
                   check=True)

  def Stop(self):
    if self._process is not None:
      self._process.kill()
      self._process.wait()
      self._process.stdout.close()
      self._process.stderr.close()
      self._process = None


def _SetShellVariable(path, name, value):
  """Replace the assignment of C{name} in a shell defaults file."""
  with open(path) as defaults:
    lines = defaults.read().splitlines()
  lines = [line for line in lines if not line.startswith(name + "=")]
  lines.append('%s="%s"' % (name, value))
  with open(path, "w") as defaults:
    defaults.write("\n".join(lines) + "\n")


class Cluster(object):
  """Three started nodes on one L{Switch}; L{Stop} ends them all.

  @ivar nodes: the L{node.Node}s, master first
  @ivar gnt: L{ganeti_commands.GanetiCommands} on the master
  """

  def __init__(self, tarball, deb_path=None, workdir=None,
               command_log=None):
    """Start the nodes, connect them, give them ssh.

    @param deb_path: this project's .deb, installed on every node (legacy
        backend for every daemon) before the cluster is made; None: stock
    @param command_log: where every node records the commands it runs
        (see L{node.Node})
    """
    self.deb_path = deb_path
    self.nodes = []
    self.switch = None
    self._keys = None
    try:
      self.switch = Switch()
      for (index, (name, address)) in enumerate(NODES):
        node = Node(tarball, FullName(name), address, workdir=workdir,
                    command_log=command_log)
        self.nodes.append(node)
        self.switch.Connect(node, "port%d" % (index + 1))
      self._keys = ssh_setup.SshKeys([(FullName(name), address)
                                      for (name, address) in NODES])
      for node in self.nodes:
        self._PrepareNode(node)
    except BaseException:
      self.Stop()
      raise
    self.master = self.nodes[0]
    self.gnt = ganeti_commands.GanetiCommands(
      self.master, "%s:%s" % (RAPI_USER, RAPI_PASSWORD))

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.Stop()

  @property
  def node_names(self):
    return [node.hostname for node in self.nodes]

  def Node(self, name):
    """The node called C{name} (short or full)."""
    for node in self.nodes:
      if name in (node.hostname, node.hostname.split(".")[0]):
        return node
    raise KeyError(name)

  def _PrepareNode(self, node):
    """Names, ssh, the OS definition, the package (if any) on one node."""
    node.WriteFile("/etc/hosts", "127.0.0.1 localhost\n" + "".join(
      "%s %s %s\n" % (address, FullName(name), name)
      for (name, address) in (("cluster", CLUSTER_ADDRESS),) + NODES))
    node.WriteFile("/etc/hostname", node.hostname + "\n")
    self._keys.Install(node)
    directory = "/srv/ganeti/os/%s" % OS_NAME
    node.WriteFile(directory + "/ganeti_api_version", "20\n")
    node.WriteFile(directory + "/variants.list", "")
    node.WriteFile(directory + "/parameters.list", "")
    for script in ("create", "import", "export", "rename", "verify"):
      node.WriteFile("%s/%s" % (directory, script), "#!/bin/sh\nexit 0\n",
                     mode=0o755)
    node.Run("mkdir -p /run/ganeti")
    # Debian's /etc/default/ganeti binds RAPI to 127.0.0.1; the load's
    # RAPI client is another node, as a cluster's RAPI clients are.
    _SetShellVariable(node.HostPath("/etc/default/ganeti"), "RAPI_ARGS",
                      RAPI_ARGS)
    if self.deb_path:
      node.CopyFile(self.deb_path, "/tmp/%s.deb" % PACKAGE)
      node.Run("dpkg -i /tmp/%s.deb" % PACKAGE, timeout=180)
      ganeti_commands.SetConfigKey(node.HostPath(BACKEND_CONFIG),
                                   "backends", "default", "legacy")

  def Init(self, timeout=300):
    """gnt-cluster init on the master, the RAPI user, the other nodes
    added with gnt-node add."""
    self.master.WriteFile("/var/lib/ganeti/rapi/users",
                          "%s {CLEARTEXT}%s write\n" % (RAPI_USER,
                                                         RAPI_PASSWORD))
    self.gnt.Run("chown -R gnt-rapi:gnt-masterd /var/lib/ganeti/rapi &&"
                 " chmod 0750 /var/lib/ganeti/rapi &&"
                 " chmod 0640 /var/lib/ganeti/rapi/users")
    self.gnt.Run("gnt-cluster init --enabled-hypervisors=fake"
                 " --enabled-disk-templates=diskless --master-netdev=v0"
                 " --nic-parameters=link=br0 --no-ssh-init --no-etc-hosts %s"
                 % CLUSTER_NAME, timeout=timeout)
    for node in self.nodes[1:]:
      self.gnt.Run("gnt-node add %s" % node.hostname, timeout=timeout)

  def AddInstances(self, per_node=1):
    """Diskless instances of the dummy OS, C{per_node} on each node;
    return their names."""
    names = []
    for node in self.nodes:
      for index in range(per_node):
        name = "%s-vm%d.%s" % (node.hostname.split(".")[0], index + 1, DOMAIN)
        self.gnt.Run("gnt-instance add -t diskless -o %s --no-name-check"
                     " --no-ip-check -n %s %s" % (OS_NAME, node.hostname,
                                                  name), timeout=300)
        names.append(name)
    return names

  def Stop(self):
    """End every node and the switch; raise if a node left a process."""
    errors = []
    for node in self.nodes:
      try:
        node.Stop()
      except RuntimeError as err:
        errors.append(str(err))
    self.nodes = []
    if self.switch is not None:
      self.switch.Stop()
      self.switch = None
    if self._keys is not None:
      self._keys.Remove()
      self._keys = None
    if errors:
      raise RuntimeError("; ".join(errors))
