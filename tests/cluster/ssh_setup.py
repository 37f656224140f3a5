"""ssh between test-bed nodes as a Ganeti cluster has it, keys made by the test.

Ganeti 3.0 logs into nodes as root with ssh: C{gnt-node add} runs
C{node-daemon-setup} on the new node, C{gnt-cluster command} and
C{gnt-cluster copyfile} reach every node (the master too) that way.  Each
node gets host keys shared by the whole cluster (as Ganeti expects of a
cluster), one root key pair authorised on every node, a C{known_hosts}
naming every node, and a running C{sshd} (the root must hold
C{openssh-server}, see L{tests.cluster.root_image}).  Clusters are made
with C{--no-ssh-init}: the test, not Ganeti, lays out the keys.
"""

import os
import shutil
import subprocess
import tempfile

_HOST_KEY_TYPES = ("rsa", "ed25519")

#: Starts sshd on a node (as a boot does: its privilege separation
#: directory first, /run being empty after a boot).
START_SSHD = "mkdir -p -m 0755 /run/sshd && /usr/sbin/sshd"

#: Stops it (before a reboot); it wrote its pid file when it started.
STOP_SSHD = "kill $(cat /run/sshd.pid)"


def _Read(directory, name):
  with open(os.path.join(directory, name)) as handle:
    return handle.read()


class SshKeys(object):
  """Host keys and root's key pair for one cluster; L{Remove} deletes them.

  @param nodes: C{(full name, address)} of every node of the cluster
  """

  def __init__(self, nodes):
    self.nodes = nodes
    self._directory = tempfile.mkdtemp(prefix="ganeti-testbed-keys-")
    try:
      for kind in _HOST_KEY_TYPES:
        subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C",
                        "testbed host key", "-f",
                        os.path.join(self._directory,
                                     "ssh_host_%s_key" % kind)], check=True)
      subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N",
                      "", "-C", "root@testbed", "-f",
                      os.path.join(self._directory, "id_rsa")], check=True)
    except BaseException:
      self.Remove()
      raise

  def Install(self, node):
    """The host keys, root's key pair, known_hosts on C{node}; start sshd."""
    node.Run("rm -f /etc/ssh/ssh_host_*")
    host_keys = []
    for kind in _HOST_KEY_TYPES:
      name = "ssh_host_%s_key" % kind
      node.WriteFile("/etc/ssh/" + name, _Read(self._directory, name),
                     mode=0o600)
      public = _Read(self._directory, name + ".pub")
      node.WriteFile("/etc/ssh/%s.pub" % name, public)
      host_keys.append(" ".join(public.split()[:2]))
    node.WriteFile("/root/.ssh/id_rsa", _Read(self._directory, "id_rsa"),
                   mode=0o600)
    public = _Read(self._directory, "id_rsa.pub")
    node.WriteFile("/root/.ssh/id_rsa.pub", public)
    node.WriteFile("/root/.ssh/authorized_keys", public, mode=0o600)
    node.WriteFile("/root/.ssh/known_hosts", "".join(
      "%s,%s,%s %s\n" % (name, name.split(".")[0], address, key)
      for (name, address) in self.nodes for key in host_keys))
    node.Run("chmod 0700 /root/.ssh && " + START_SSHD)

  def Remove(self):
    shutil.rmtree(self._directory, ignore_errors=True)
