"""Prints the test bed's table (check x column) after the run."""

from tests.cluster import scenario
from tests.cluster import test_cluster


def FormatTable(outcomes_by_column, figures_by_column=None):
  """One row per check, one column per column that ran, then what checks
  measured, then the reason of every failure.

  @param outcomes_by_column: {column: [(title, outcome), ...]}
  @param figures_by_column: {column: {title: figures}}
  """
  columns = [c for c in scenario.COLUMNS if c in outcomes_by_column]
  titles = [title for (title, _) in outcomes_by_column[columns[0]]]
  cells = {c: dict(outcomes_by_column[c]) for c in columns}
  width = max(len(title) for title in titles + ["check"])

  def Row(first, values):
    return "%-*s  %s" % (width, first, "  ".join("%-8s" % v for v in values))

  def Short(outcome):
    return "FAIL" if outcome.startswith(scenario.FAIL_PREFIX) else outcome

  lines = [Row("check", columns)]
  lines += [Row(title, [Short(cells[c].get(title, scenario.NOT_RUN))
                        for c in columns]) for title in titles]
  lines += ["%s / %s: %s" % (column, title, figures)
            for column in columns
            for (title, figures) in sorted(
              (figures_by_column or {}).get(column, {}).items())]
  lines += ["%s / %s: %s" % (column, title, outcome)
            for column in columns
            for (title, outcome) in outcomes_by_column[column]
            if outcome.startswith(scenario.FAIL_PREFIX)]
  return "\n".join(lines)


def pytest_terminal_summary(terminalreporter):
  if test_cluster.OUTCOMES:
    terminalreporter.section("cluster test bed")
    terminalreporter.write_line(FormatTable(test_cluster.OUTCOMES,
                                            test_cluster.FIGURES))
