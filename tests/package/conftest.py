"""The Debian package, built once per test session by shims/debian/build-deb."""

import os
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
  __file__))))
BUILD_DEB = os.path.join(REPO, "shims", "debian", "build-deb")


@pytest.fixture(scope="session")
def built_deb(tmp_path_factory):
  """The path of a freshly built ganeti-http-shim_<version>_all.deb."""
  output = tmp_path_factory.mktemp("deb")
  result = subprocess.run([BUILD_DEB, str(output)], check=True,
                          stdout=subprocess.PIPE, universal_newlines=True)
  return result.stdout.strip().splitlines()[-1]
