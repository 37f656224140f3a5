"""The Debian 12 root a test-bed node runs in, built once and cached.

C{mmdebstrap} builds a minimal bookworm root with Debian's own Ganeti 3.0
packages from the machine's Debian package sources and packs it into a
tarball.  The tarball is cached outside the repository (in
C{/var/cache/ganeti-http-testbed}, or C{$GANETI_HTTP_TESTBED_CACHE}) under a
name derived from everything that decides its content, so a changed
package list builds a new one and CI from a fresh clone may still find it.
Every use touches the tarball; one no run has used for L{UNUSED_DAYS} is
removed (another checkout of another commit may still use an older one).

Ganeti's own C{ganeti-3.0} .deb stays in the root's apt cache, so the
scenario can reinstall it without network.
"""

import fcntl
import glob
import hashlib
import os
import subprocess
import time

SUITE = "bookworm"

#: What the root holds besides minbase: Ganeti (the C{ganeti} package
#: brings the gnt-* commands and the init script, C{ganeti-3.0} alone does
#: not), what this project's package depends on, systemd (never started:
#: for systemd-tmpfiles, which a Debian 12 boot runs), the tools the
#: scenario uses inside the node (nftables: docs/operations.md's
#: C{ganeti-http firewall} commands) and an ssh server (Ganeti 3.0 reaches
#: nodes, the master too, as root with ssh: L{tests.cluster.ssh_setup}).
PACKAGES = (
  "ganeti",
  "systemd",
  "lighttpd",
  "lighttpd-mod-openssl",
  "python3-pycurl",
  "python3-six",
  "adduser",
  "passwd",
  "iproute2",
  "procps",
  "curl",
  "nftables",
  "openssh-server",
)

#: The .deb kept in the root's apt cache (everything else is deleted).
KEPT_DEB = "ganeti-3.0_*.deb"

APT_ARCHIVES = "var/cache/apt/archives"

DEFAULT_CACHE_DIR = "/var/cache/ganeti-http-testbed"

#: Days after its last use that a cached tarball is removed.
UNUSED_DAYS = 14


def CacheDir():
  """Where root tarballs are kept between runs."""
  return os.environ.get("GANETI_HTTP_TESTBED_CACHE", DEFAULT_CACHE_DIR)


def _BuildCommand(target):
  """The mmdebstrap command line writing the root tarball to C{target}."""
  keep_only_ganeti = ('find "$1/%s" -name "*.deb" ! -name "%s" -delete'
                      % (APT_ARCHIVES, KEPT_DEB))
  return [
    "mmdebstrap", "--variant=minbase", "--format=tar",
    "--include=" + ",".join(PACKAGES),
    "--skip=cleanup/apt/cache",
    "--customize-hook=" + keep_only_ganeti,
    SUITE, target,
  ]


def _Key():
  """A short hash of the build command: a new command, a new tarball."""
  command = " ".join(_BuildCommand("TARGET"))
  return hashlib.sha256(command.encode("utf-8")).hexdigest()[:16]


def _RemoveUnused(cache, used):
  """Remove the cache's tarballs, their logs and leftover partial builds
  (except C{used}'s) that nothing touched for L{UNUSED_DAYS}."""
  oldest = time.time() - UNUSED_DAYS * 86400
  for path in glob.glob(os.path.join(cache, "root-*.tar*")):
    if not path.startswith(used) and os.path.getmtime(path) < oldest:
      os.unlink(path)


def RootTarball():
  """The path of the cached root tarball, built first if missing.

  Concurrent callers wait for one build (a lock file in the cache).
  """
  cache = CacheDir()
  os.makedirs(cache, exist_ok=True)
  tarball = os.path.join(cache, "root-%s-%s.tar" % (SUITE, _Key()))
  with open(os.path.join(cache, "build.lock"), "w") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    if not os.path.exists(tarball):
      partial = tarball + ".partial"
      log_path = tarball + ".log"
      with open(log_path, "w") as log:
        result = subprocess.run(_BuildCommand(partial), stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
      if result.returncode != 0:
        raise RuntimeError("mmdebstrap failed (exit %d); see %s"
                           % (result.returncode, log_path))
      os.rename(partial, tarball)
    os.utime(tarball)
    _RemoveUnused(cache, tarball)
  return tarball
