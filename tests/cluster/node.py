"""One test-bed node: a fresh copy of the root in namespaces of its own.

A L{Node} unpacks the cached root tarball into a new directory and starts
it with C{unshare} in new network, UTS, mount and PID namespaces.  Inside,
before the node's first process chroots into the copy, a setup script
mounts proc, sysfs, C{/dev} and an empty tmpfs on C{/run} (the root's own
mount namespace sees them, the machine does not), names the host, and
creates the node's only network: a veth pair C{v0}/C{v1} with the node's
192.0.2.0/24 address on C{v0} and a bridge C{br0} for the instances' NICs.
No link or address is created outside the node's network namespace.

Commands run inside with C{nsenter} (every namespace and the root of the
node's first process); each command line can be recorded in a log.  L{Node.Stop} kills that first process, which ends
everything in the PID namespace and with it the namespaces and mounts, then
checks that no process is left in the copy and no mount in the machine's
mount namespace, and deletes it.
"""

import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

#: Environment of every command run inside the node.
NODE_ENV = {
  "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
  "HOME": "/root",
  "LANG": "C.UTF-8",
}

_SETUP_SCRIPT = r"""
set -eu
root=$1 address=$2 hostname=$3
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount -t tmpfs -o mode=0755 tmpfs "$root/run"
mkdir -p "$root/run/lock"
ip link set lo up
ip link add v0 type veth peer name v1
ip address add "$address/24" dev v0
ip link set v0 up
ip link set v1 up
ip link add br0 type bridge
ip link set br0 up
hostname "$hostname"
exec chroot "$root" /usr/bin/python3 -c "$4"
"""

#: The node's first process (PID 1 of its PID namespace): says it is
#: ready, then reaps every orphan (Ganeti's daemons daemonize) until killed.
_INIT_PROGRAM = r"""
import os, sys, time
sys.stdout.write("ready\n")
sys.stdout.close()
while True:
  try:
    os.waitpid(-1, 0)
  except ChildProcessError:
    time.sleep(0.2)
"""


class CommandFailed(Exception):
  """A command inside the node exited with a non-zero status."""

  def __init__(self, command, result):
    Exception.__init__(self, "%r exited with %d: %s"
                       % (command, result.returncode,
                          (result.stdout + result.stderr).strip()[-2000:]))
    self.result = result


class Node(object):
  """A started node; use as a context manager or call L{Stop}."""

  def __init__(self, tarball, hostname, address, workdir=None,
               command_log=None):
    """Unpack a fresh copy of C{tarball} and start the node in it.

    @param hostname: the node's fully qualified name
    @param address: its address, from 192.0.2.0/24
    @param workdir: where to make the copy (a new temporary directory in it)
    @param command_log: a file to which L{Run} appends every command line,
        one JSON object a line (see L{tests.cluster.documented_commands})
    """
    self.hostname = hostname
    self.address = address
    self.command_log = command_log
    self.directory = tempfile.mkdtemp(prefix="ganeti-testbed-", dir=workdir)
    self.root = os.path.join(self.directory, "root")
    self._unshare = None
    self.init_pid = None
    try:
      os.mkdir(self.root)
      subprocess.run(["tar", "-xf", tarball, "-C", self.root,
                      "--numeric-owner"], check=True)
      self._Start()
    except BaseException:
      self.Stop()
      raise

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.Stop()

  def HostPath(self, path):
    """The machine's path of C{path} inside the node's root (not /run)."""
    return os.path.join(self.root, path.lstrip("/"))

  def _Start(self):
    """Run the setup script in new namespaces; wait for the first process."""
    self._unshare = subprocess.Popen(
      ["unshare", "--net", "--uts", "--mount", "--pid", "--fork",
       "--kill-child", "--", "sh", "-c", _SETUP_SCRIPT, "setup", self.root,
       self.address, self.hostname, _INIT_PROGRAM],
      stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, start_new_session=True)
    ready, _, _ = select.select([self._unshare.stdout], [], [], 60)
    line = self._unshare.stdout.readline() if ready else b""
    if line != b"ready\n":
      self._unshare.kill()
      raise RuntimeError("node %s did not start: %s" % (
        self.hostname, self._unshare.stderr.read().decode(errors="replace")))
    self.init_pid = self._ChildOf(self._unshare.pid)

  @staticmethod
  def _ChildOf(pid):
    """The one child process of C{pid}."""
    with open("/proc/%d/task/%d/children" % (pid, pid)) as children:
      (child,) = children.read().split()
    return int(child)

  def Run(self, command, check=True, timeout=300):
    """Run shell C{command} inside the node as root.

    @return: a C{subprocess.CompletedProcess} with text C{stdout}/C{stderr}
    @raise CommandFailed: if C{check} and the exit status is not 0
    """
    argv = ["nsenter", "--target", str(self.init_pid), "--net", "--uts",
            "--mount", "--pid", "--root", "--wd", "--",
            "/usr/bin/env", "-i"]
    argv += ["%s=%s" % item for item in sorted(NODE_ENV.items())]
    argv += ["/bin/sh", "-c", command]
    if self.command_log:
      with open(self.command_log, "a") as log:
        log.write(json.dumps({"node": self.hostname, "command": command})
                  + "\n")
    result = subprocess.run(
      argv, stdin=subprocess.DEVNULL,
      stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
      timeout=timeout)
    if check and result.returncode != 0:
      raise CommandFailed(command, result)
    return result

  def WriteFile(self, path, content, mode=0o644):
    """Write a file inside the node's root (not under /run)."""
    host_path = self.HostPath(path)
    os.makedirs(os.path.dirname(host_path), exist_ok=True)
    with open(host_path, "w") as handle:
      handle.write(content)
    os.chmod(host_path, mode)

  def CopyFile(self, host_path, path):
    """Copy a file of the machine to C{path} inside the node's root, whole
    or not at all: a copy is written beside it and renamed over it, so a
    process reading the old file (a Python starting the script copied
    again for the next load driver) never reads a truncated one."""
    target = self.HostPath(path)
    partial = "%s.copying" % target
    shutil.copyfile(host_path, partial)
    os.replace(partial, target)

  def ProcessesLeft(self):
    """PIDs (machine view) of processes whose root is inside the copy."""
    left = []
    for entry in os.listdir("/proc"):
      if not entry.isdigit():
        continue
      try:
        root = os.readlink("/proc/%s/root" % entry)
      except OSError:
        continue
      if root == self.root or root.startswith(self.root + "/"):
        left.append(int(entry))
    return left

  def Stop(self):
    """End every process of the node and delete its copy of the root.

    @raise RuntimeError: if a process survived (the copy is then kept)
    """
    if self._unshare is not None:
      if self.init_pid is not None:
        try:
          os.kill(self.init_pid, signal.SIGKILL)
        except ProcessLookupError:
          pass
      self._unshare.kill()
      self._unshare.wait()
      self._unshare.stdout.close()
      self._unshare.stderr.close()
      self._unshare = None
    deadline = time.monotonic() + 10
    while self.ProcessesLeft() and time.monotonic() < deadline:
      time.sleep(0.1)
    left = self.ProcessesLeft()
    if left:
      raise RuntimeError("processes left in %s: %s" % (self.root, left))
    mounts = self.MountsLeft()
    if mounts:
      raise RuntimeError("mounts left in the machine's namespace: %s"
                         % mounts)
    shutil.rmtree(self.directory, ignore_errors=True)

  def MountsLeft(self):
    """Mount points in the machine's mount namespace inside the copy."""
    with open("/proc/self/mountinfo") as mountinfo:
      points = [line.split()[4] for line in mountinfo]
    return [point for point in points
            if point == self.root or point.startswith(self.root + "/")]
