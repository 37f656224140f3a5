"""ganeti-http-shim installed into a Debian 12 root with Debian's Ganeti 3.0.

The root comes from mmdebstrap (cached outside the repository, keyed by
its package list).  check_deb_in_root.sh installs an older version of the
package and upgrades it to the current one, starts Ganeti's node daemon on
each backend, reinstalls ganeti-3.0 under it, installs and removes a later
Ganeti version, removes and purges the package, and compares Ganeti's files
with its .deb's md5sums after each step.  It runs in network, UTS, PID and
mount namespaces of its own.
"""

import glob
import hashlib
import os
import shutil
import subprocess

import pytest

import ganeti.http
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


@pytest.fixture
def older_deb(tmp_path):
  """A package of an older version whose ganeti/http has a module and a
  subpackage with a data file that the current one lacks, as a layout
  change would leave."""
  source = tmp_path / "source"
  for part in ("ganeti/http", "shims/debian", "docs"):
    shutil.copytree(os.path.join(REPO, part), str(source / part),
                    ignore=shutil.ignore_patterns("__pycache__"))
  init = source / "ganeti" / "http" / "__init__.py"
  init.write_text(init.read_text().replace(
    'SHIM_VERSION = "%s"' % ganeti.http.SHIM_VERSION,
    'SHIM_VERSION = "%s~older"' % ganeti.http.SHIM_VERSION))
  (source / "ganeti" / "http" / "obsolete.py").write_text("")
  (source / "ganeti" / "http" / "moved").mkdir()
  (source / "ganeti" / "http" / "moved" / "__init__.py").write_text("")
  (source / "ganeti" / "http" / "moved" / "data.txt").write_text("data\n")
  result = subprocess.run(
    [str(source / "shims" / "debian" / "build-deb"), str(tmp_path / "dist")],
    check=True, stdout=subprocess.PIPE, universal_newlines=True)
  return result.stdout.split()[-1]


def _Check(root, deb, *older_deb):
  (ganeti_deb,) = glob.glob(root + GANETI_DEBS + "/ganeti-3.0_*.deb")
  return subprocess.run(
    ["unshare", "--net", "--uts", "--pid", "--mount", "--fork", "sh", CHECK,
     root, deb, ganeti_deb] + list(older_deb),
    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    universal_newlines=True, timeout=600)


def test_upgrade_install_reinstall_trigger_remove_purge(root, built_deb,
                                                        older_deb):
  result = _Check(root, built_deb, older_deb)
  assert result.returncode == 0, result.stdout
  assert result.stdout.splitlines()[-1] == "PASS", result.stdout


def test_the_check_sees_a_changed_ganeti_file(root, built_deb):
  with open(root + "/usr/share/ganeti/3.0/ganeti/http/client.py", "a") as handle:
    handle.write("# changed\n")
  result = _Check(root, built_deb)
  assert result.returncode == 1, result.stdout
  assert "FAIL: Ganeti's files differ" in result.stdout
