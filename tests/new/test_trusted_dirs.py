"""Which directories the fastcgi backend trusts (docs/security.md, rules
1-3), with directories of this process's own user."""

import os
import stat

import pytest

from ganeti.http.system import trusted_dirs


@pytest.fixture
def base(tmp_path):
  os.chmod(tmp_path, 0o755)
  return tmp_path


def _Opens(path, **kwargs):
  os.close(trusted_dirs.OpenTrusted(str(path), **kwargs))
  return True


@pytest.mark.parametrize("mode", [0o775, 0o757, 0o1777, 0o1770])
def test_last_directory_writable_by_others_is_refused(base, mode):
  directory = base / "run"
  directory.mkdir()
  os.chmod(directory, mode)
  with pytest.raises(trusted_dirs.UntrustedPathError) as info:
    _Opens(directory)
  assert str(directory) in str(info.value)


def test_sticky_directory_above_is_trusted(base):
  os.chmod(base, 0o1777)  # as /tmp
  (base / "run").mkdir()
  assert _Opens(base / "run")
  os.chmod(base, 0o777)  # not sticky: anyone could rename "run"
  with pytest.raises(trusted_dirs.UntrustedPathError):
    _Opens(base / "run")


def test_own_symbolic_link_is_followed(base):
  (base / "real").mkdir()
  os.symlink("real", str(base / "link"))
  os.symlink(str(base / "link"), str(base / "absolute"))
  assert _Opens(base / "absolute" / "..")
  os.symlink("loop", str(base / "loop"))
  with pytest.raises(trusted_dirs.UntrustedPathError):
    _Opens(base / "loop")


def test_missing_directory_is_made_with_its_mode_whatever_the_umask(base):
  old = os.umask(0o077)
  try:
    assert _Opens(base / "run", create_mode=0o755)
  finally:
    os.umask(old)
  assert stat.S_IMODE(os.stat(base / "run").st_mode) == 0o755
  with pytest.raises(trusted_dirs.UntrustedPathError) as info:
    _Opens(base / "missing" / "run", create_mode=0o755)
  assert "%s does not exist" % (base / "missing") in str(info.value)


def test_relative_path_is_refused():
  with pytest.raises(trusted_dirs.UntrustedPathError):
    _Opens("run")
