"""Tables of results, printed as text and written as Markdown.

A L{Table} is rows by columns of cells, filled as measurements arrive; the
table's view function turns a cell into text, so two tables can show two
aspects of the same measurements.
L{WriteDocument} replaces the generated part of docs/performance.md and
keeps whatever was written around it by hand.
"""

import os

from bench import measure

BEGIN_MARKER = "<!-- bench/run.py output begins: do not edit by hand -->"
END_MARKER = "<!-- bench/run.py output ends -->"


def Throughput(measurement):
  """A L{measure.Measurement} as "req/s (p50/p99 ms)", problems appended."""
  result = measurement.ab
  text = "%s (%s/%s)" % (_Thousands(result.rps), _Millis(result.p50),
                         _Millis(result.p99))
  if result.errors:
    text += " %d errors" % result.errors
  return text + _Busy(measurement)


def CpuCost(measurement):
  """A L{measure.Measurement} as CPU µs per request: the server's (of
  which Python's, when lighttpd is in front) and the load generator's."""
  python = measurement.server_micros - measurement.lighttpd_micros
  if measurement.lighttpd_micros and python >= 1:
    server = "%.0f = %.0f py + %.0f lighttpd" % (
      measurement.server_micros, python, measurement.lighttpd_micros)
  else:
    server = "%.0f" % measurement.server_micros
  return "%s; ab %.0f" % (server, measurement.ab_micros)


#: Peak RSS no process may reach in the streamed rows, in MiB.
RSS_LIMIT_MIB = 64


def _Busy(measurement):
  return (" (busy machine)"
          if measurement.background_cores > measure.QUIET_CORES else "")


def Bandwidth(measurement):
  """A transfer's L{measure.Measurement} as GB/s: the median run, and the
  range of all runs when there are several."""
  result = measurement.ab
  if result.error:
    return "FAILED"
  spread = ""
  if len(result.runs) > 1:
    spread = " (%.2f–%.2f)" % (min(result.runs), max(result.runs))
  return "%.2f GB/s%s%s" % (result.gbps, spread, _Busy(measurement))


def PeakRss(measurement):
  """A transfer's L{measure.Measurement} as each process's peak RSS, MiB:
  the server's processes in the data path, then the client's."""
  result = measurement.ab
  parts = ["%s %.0f" % (name, kib / 1024.0)
           for (name, kib) in result.PeakRss()]
  text = ", ".join(parts)
  if any(kib >= RSS_LIMIT_MIB * 1024 for (_, kib) in result.PeakRss()):
    text += " (%d MiB or more!)" % RSS_LIMIT_MIB
  if result.error:
    text += " (FAILED)"
  return text


def CpuPerGib(measurement):
  """A transfer's L{measure.Measurement} as CPU seconds per GiB moved: the
  server's (for the fastcgi backend split into Python and lighttpd), then
  the client's."""
  result = measurement.ab
  gib = (result.total_moved or result.moved) / float(1 << 30)
  if gib <= 0:
    return "-"
  server = measurement.server_cpu / gib
  lighttpd = measurement.lighttpd_cpu / gib
  python = server - lighttpd
  if lighttpd and python >= 0.01:
    text = "%.2f = %.2f py + %.2f lighttpd" % (server, python, lighttpd)
  else:
    text = "%.2f" % server
  return "%s; %s %.2f" % (text, result.client, measurement.ab_cpu / gib)


def Latency(measurement):
  """A feedback run's L{measure.Measurement} as p50/p99/max delay, ms."""
  result = measurement.ab
  if result.error:
    return "FAILED: %s" % result.error
  return "%s / %s / %s (%d messages)%s" % (
    _Millis(result.p50), _Millis(result.p99), _Millis(result.worst),
    len(result.delays), _Busy(measurement))


def _Thousands(value):
  return "{:,.0f}".format(value)


def _Millis(value):
  if value is None:
    return "n/a"
  return ("%.2f" if value < 10 else "%.1f" if value < 100 else "%.0f") % value


def Plain(cell):
  """The view of cells that are text already, or have C{Cell()}."""
  return cell if isinstance(cell, str) else cell.Cell()


class Table(object):
  """A titled grid of results.

  @param title: heading of the table
  @param legend: one sentence saying what a cell holds
  @param corner: header of the row-label column
  @param columns: column labels, in order
  @param view: C{view(cell)} returns a cell's text (default: L{Plain})
  """

  def __init__(self, title, legend, corner, columns, view=Plain):
    self.title = title
    self.view = view
    self.legend = legend
    self.corner = corner
    self.columns = list(columns)
    self.rows = []
    self._cells = {}

  def Put(self, row, column, cell):
    """Store C{cell} at C{row}, C{column}."""
    if row not in self.rows:
      self.rows.append(row)
    self._cells[(row, column)] = cell

  def Get(self, row, column):
    """The cell at C{row}, C{column}, or None."""
    return self._cells.get((row, column))

  def _Grid(self):
    grid = [[self.corner] + self.columns]
    for row in self.rows:
      cells = [self._cells.get((row, column)) for column in self.columns]
      grid.append([row] + ["-" if cell is None else self.view(cell)
                           for cell in cells])
    return grid

  def Text(self):
    """Aligned plain text for a terminal."""
    grid = self._Grid()
    widths = [max(len(line[index]) for line in grid)
              for index in range(len(grid[0]))]
    lines = [self.title, self.legend]
    for (number, line) in enumerate(grid):
      lines.append("  ".join(text.ljust(width)
                             for (text, width) in zip(line, widths)).rstrip())
      if number == 0:
        lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)

  def Markdown(self):
    """A Markdown section: heading, legend, table."""
    grid = self._Grid()
    lines = ["### %s" % self.title, "", self.legend, ""]
    lines.append("| %s |" % " | ".join(grid[0]))
    lines.append("|%s" % ("---|" * len(grid[0])))
    for line in grid[1:]:
      lines.append("| %s |" % " | ".join(line))
    return "\n".join(lines)


class RatioCell(object):
  """A ratio of two throughputs, checked against a target if it has one."""

  def __init__(self, ratio, target=None):
    self.ratio = ratio
    self.target = target

  @property
  def met(self):
    """Whether the target is met (None without a target)."""
    if self.target is None:
      return None
    return self.ratio >= self.target

  def Cell(self):
    """"3.2×", with the target and its verdict when there is one."""
    text = "%.2f×" % self.ratio
    if self.target is not None:
      text += " (target ≥ %g×: %s)" % (self.target,
                                       "met" if self.met else "MISSED")
    return text


def Ratio(numerator, denominator, target=None):
  """The L{RatioCell} of two L{measure.Measurement}s' req/s, or None."""
  if numerator is None or denominator is None or not denominator.ab.rps:
    return None
  return RatioCell(numerator.ab.rps / denominator.ab.rps, target)


def WriteDocument(path, generated, preamble):
  """Put C{generated} between the markers of the file at C{path}.

  Text before and after the markers stays; a missing file (or one without
  markers) gets C{preamble} before the generated part.
  """
  before = preamble
  after = ""
  if os.path.exists(path):
    with open(path) as handle:
      text = handle.read()
    if BEGIN_MARKER in text and END_MARKER in text:
      before = text.split(BEGIN_MARKER, 1)[0]
      after = text.split(END_MARKER, 1)[1]
  with open(path + ".new", "w") as handle:
    handle.write(before + BEGIN_MARKER + "\n\n" + generated.strip() +
                 "\n\n" + END_MARKER + (after or "\n"))
  os.replace(path + ".new", path)
