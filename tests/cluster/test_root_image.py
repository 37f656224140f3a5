"""The root tarball cache (L{root_image}): what a run keeps and removes;
no tarball is built here (the current one is faked)."""

import os
import time

from tests.cluster import root_image

_DAY = 86400


def _File(path, age_days):
  with open(path, "w"):
    pass
  then = time.time() - age_days * _DAY
  os.utime(path, (then, then))


def test_a_run_keeps_its_tarball_and_recently_used_ones(tmp_path,
                                                         monkeypatch):
  monkeypatch.setenv("GANETI_HTTP_TESTBED_CACHE", str(tmp_path))
  key = root_image._Key()  # pylint: disable=protected-access
  current = str(tmp_path / ("root-bookworm-%s.tar" % key))
  unused_days = root_image.UNUSED_DAYS
  _File(current, unused_days + 30)
  _File(current + ".log", unused_days + 30)
  _File(str(tmp_path / "root-bookworm-recent.tar"), unused_days - 1)
  for name in ("root-bookworm-old.tar", "root-bookworm-old.tar.log",
               "root-bookworm-failed.tar.log",
               "root-bookworm-broken.tar.partial"):
    _File(str(tmp_path / name), unused_days + 1)
  _File(str(tmp_path / "unrelated"), unused_days + 1)

  assert root_image.RootTarball() == current
  name = os.path.basename(current)
  assert sorted(os.listdir(str(tmp_path))) == [
    "build.lock", name, name + ".log", "root-bookworm-recent.tar",
    "unrelated"]
  assert time.time() - os.path.getmtime(current) < _DAY
