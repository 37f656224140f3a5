"""Prints the test bed's table (check x column) after the run."""

from tests.cluster import scenario
from tests.cluster import test_cluster


def pytest_terminal_summary(terminalreporter):
  if test_cluster.OUTCOMES:
    terminalreporter.section("cluster test bed")
    terminalreporter.write_line(scenario.FormatTable(test_cluster.OUTCOMES))
