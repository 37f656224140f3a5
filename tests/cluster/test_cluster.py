"""The cluster test bed: the scenario on stock Ganeti, legacy and fastcgi.

Each column gets a fresh node (see L{tests.cluster.node}).  The legacy and
fastcgi columns install this project's Debian package, named by the
C{GANETI_HTTP_DEB} environment variable (C{make test} sets it).  Every
check must pass in every column; the table is printed at the end of the
run (see conftest.py).
"""

import os

import pytest

from tests.cluster import root_image
from tests.cluster import scenario
from tests.cluster.node import Node

DEB_VARIABLE = "GANETI_HTTP_DEB"

#: {column: [(title, outcome), ...]}, filled by the tests, printed by
#: conftest.py's terminal summary.
OUTCOMES = {}
#: {column: {title: figures}}: what checks measured, printed under it.
FIGURES = {}


@pytest.fixture(scope="module")
def root_tarball():
  assert os.geteuid() == 0, "the cluster test bed needs root (namespaces)"
  return root_image.RootTarball()


def _PackagePath(column):
  if column == "stock":
    return None
  path = os.environ.get(DEB_VARIABLE, "")
  assert os.path.isfile(path), (
    "%s must name this project's .deb (make test sets it); got %r"
    % (DEB_VARIABLE, path))
  return path


@pytest.mark.parametrize("column", scenario.COLUMNS)
def test_cluster_scenario(column, root_tarball):
  deb_path = _PackagePath(column)
  node = Node(root_tarball, scenario.NODE_NAME, scenario.NODE_ADDRESS)
  try:
    checks = scenario.Scenario(node, column, deb_path)
    outcomes = checks.Run()
  finally:
    node.Stop()  # raises if a process of the node survived
  OUTCOMES[column] = outcomes
  FIGURES[column] = checks.figures
  allowed = (scenario.PASS, scenario.NOT_APPLICABLE if column == "stock"
             else scenario.PASS)
  failed = ["%s: %s" % item for item in outcomes if item[1] not in allowed]
  assert not failed, "\n".join(failed)
