"""ganeti-http-shim installed into a Debian 12 root with Debian's Ganeti 3.0.

The root comes from mmdebstrap (cached outside the repository, keyed by
its package list); check_deb_in_root.sh installs the package, reinstalls
ganeti-3.0 under it, installs and removes a later Ganeti version, removes
and purges it, and compares Ganeti's files with its .deb's md5sums after
each step.  It runs in network, PID and mount namespaces of its own.
"""

import glob
import hashlib
import os
import shutil
import subprocess

import pytest

from tests.package.conftest import REPO

CACHE = os.environ.get("GANETI_HTTP_SHIM_BUILD_CACHE",
                       "/var/cache/ganeti-http-shim-build")
PACKAGES = ("ganeti", "lighttpd", "lighttpd-mod-openssl", "python3-pycurl")
#: Where the root keeps the ganeti-3.0 .deb it was made with.
GANETI_DEBS = "/root/ganeti-debs"
MMDEBSTRAP = [
  "mmdebstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES),
  "--customize-hook=mkdir -p \"$1%s\" && cp \"$1\"/var/cache/apt/archives/"
  "ganeti-3.0_*.deb \"$1%s\"" % (GANETI_DEBS, GANETI_DEBS),
  "bookworm"]
CHECK = os.path.join(REPO, "tests", "package", "check_deb_in_root.sh")


@pytest.fixture(scope="module")
def root_tarball():
  """A Debian 12 root as a tarball, made once and then cached."""
  key = hashlib.sha256(" ".join(MMDEBSTRAP).encode()).hexdigest()[:12]
  path = os.path.join(CACHE, "roots", "bookworm-%s.tar" % key)
  if not os.path.exists(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # mmdebstrap picks the format from the name: keep ".tar" at the end
    partial = "%s.%d.part.tar" % (path[:-len(".tar")], os.getpid())
    subprocess.run(MMDEBSTRAP + [partial], check=True,
                   stdout=subprocess.DEVNULL)
    os.rename(partial, path)
  return path


@pytest.fixture
def root(root_tarball, tmp_path):
  """A fresh copy of the root, removed afterwards."""
  directory = tmp_path / "root"
  directory.mkdir()
  subprocess.run(["tar", "-C", str(directory), "-xf", root_tarball],
                 check=True)
  yield str(directory)
  shutil.rmtree(str(directory))


def _Check(root, deb):
  (ganeti_deb,) = glob.glob(root + GANETI_DEBS + "/ganeti-3.0_*.deb")
  return subprocess.run(
    ["unshare", "--net", "--pid", "--mount", "--fork", "sh", CHECK, root, deb,
     ganeti_deb], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    universal_newlines=True, timeout=600)


def test_install_reinstall_trigger_remove_purge(root, built_deb):
  result = _Check(root, built_deb)
  assert result.returncode == 0, result.stdout
  assert result.stdout.splitlines()[-1] == "PASS", result.stdout


def test_the_check_sees_a_changed_ganeti_file(root, built_deb):
  with open(root + "/usr/share/ganeti/3.0/ganeti/http/client.py", "a") as handle:
    handle.write("# changed\n")
  result = _Check(root, built_deb)
  assert result.returncode == 1, result.stdout
  assert "FAIL: Ganeti's files differ" in result.stdout
