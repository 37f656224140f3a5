"""The cluster test bed: the scenario on stock Ganeti, legacy and fastcgi.

Each column gets a fresh node (see L{tests.cluster.node}) running sshd
(Ganeti's C{gnt-cluster command} and C{copyfile} reach even the master by
ssh).  The legacy and fastcgi columns install this project's Debian
package, named by the C{GANETI_HTTP_DEB} environment variable (C{make
test} sets it).  Every check must pass in every column; the table is
printed at the end of the run (see conftest.py).  Every command the nodes
ran is recorded; the last test checks that docs/operations.md's commands
are among them.
"""

import os

import pytest

from tests.cluster import documented_commands
from tests.cluster import root_image
from tests.cluster import scenario
from tests.cluster import ssh_setup
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


@pytest.fixture(scope="module")
def command_log(tmp_path_factory):
  """The file every column's node records its commands in."""
  return str(tmp_path_factory.mktemp("testbed") / "commands.log")


def _PackagePath(column):
  if column == "stock":
    return None
  path = os.environ.get(DEB_VARIABLE, "")
  assert os.path.isfile(path), (
    "%s must name this project's .deb (make test sets it); got %r"
    % (DEB_VARIABLE, path))
  return path


@pytest.mark.parametrize("column", scenario.COLUMNS)
def test_cluster_scenario(column, root_tarball, command_log):
  deb_path = _PackagePath(column)
  keys = ssh_setup.SshKeys([(scenario.NODE_NAME, scenario.NODE_ADDRESS)])
  node = None
  try:
    node = Node(root_tarball, scenario.NODE_NAME, scenario.NODE_ADDRESS,
                command_log=command_log)
    keys.Install(node)
    checks = scenario.Scenario(node, column, deb_path)
    outcomes = checks.Run()
  finally:
    keys.Remove()
    if node is not None:
      node.Stop()  # raises if a process of the node survived
  OUTCOMES[column] = outcomes
  FIGURES[column] = checks.figures
  allowed = (scenario.PASS, scenario.NOT_APPLICABLE if column == "stock"
             else scenario.PASS)
  failed = ["%s: %s" % item for item in outcomes if item[1] not in allowed]
  assert not failed, "\n".join(failed)


def test_operations_doc_commands_ran(command_log):
  """Every command of docs/operations.md's C{sh testbed} blocks is among
  those the columns above ran (see L{documented_commands} for the rule).

  Run after the scenario of every column (pytest keeps the file's order).
  """
  recorded = documented_commands.ReadLog(command_log)
  assert recorded, "no command recorded: the scenario did not run"
  missing = documented_commands.NotRun(
    documented_commands.DocumentCommands("testbed"), recorded)
  assert not missing, (
    "docs/operations.md has commands the test bed did not run:\n%s"
    % "\n".join(str(command) for command in missing))
