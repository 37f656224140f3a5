"""What lighttpd's account writes reaches the daemon's log only quoted
(issue 14 §2): marked as lighttpd's, every control character escaped."""

import os
import signal

import pytest

from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.backends.fastcgi.lighttpd import output
from tests.new.lighttpd_helpers import (CanSwitchToNobody, Settings, WaitFor,
                                        fcgi_app, scratch_dir, supervise)
from tests.new.test_runtime_dir_attacks import AsNobody

_ = (fcgi_app, scratch_dir, supervise)  # fixtures


@pytest.mark.parametrize(("data", "quoted"), [
  (b"plain line", "lighttpd| plain line"),
  (b"one\ntwo\n", "lighttpd| one\nlighttpd| two"),
  (b"\x1b[2J\x1b]0;title\x07\r", "lighttpd| \\x1b[2J\\x1b]0;title\\x07\\r"),
  (b"not utf-8 \xff\xfe, a \\ backslash",
   "lighttpd| not utf-8 \\xff\\xfe, a \\\\ backslash"),
  ("bidi \u202e and line\u2028separator, caf\u00e9".encode(),
   "lighttpd| bidi \\u202e and line\\u2028separator, caf\u00e9"),
  (b"", ""),
])
def test_quote(data, quoted):
  assert output.Quote(data) == quoted


_APPEND_AND_KILL = """
import os, signal, sys
with open(sys.argv[1], "ab") as log:
  log.write(b"\\n2026-12-05 12:00:00,000: ganeti-noded pid=1 INFO forged\\n"
            b"\\x1b[2J\\x1b]0;owned\\x07 \\xff\\r")
os.kill(int(sys.argv[2]), signal.SIGKILL)
"""


@pytest.mark.skipif(not CanSwitchToNobody(),
                    reason="needs root and nobody/nogroup; CI runs as root")
def test_log_forged_by_the_frontend_account_is_quoted(
    supervise, scratch_dir, fcgi_app, caplog):
  """lighttpd's account (here nobody) writes a line that looks like one of
  the daemon's, and terminal escapes, into lighttpd's error log, then kills
  lighttpd: the daemon's log quotes it marked and escaped."""
  settings = Settings(scratch_dir, fcgi_app.socket_path, username="nobody",
                      groupname="nogroup")
  supervisor = supervise(lighttpd_config.render(settings), settings.state_dir,
                         address=("127.0.0.1", settings.port), user="nobody",
                         group="nogroup")
  supervisor.start()
  first = supervisor.pid
  AsNobody(_APPEND_AND_KILL,
           lighttpd_config.StateLayout(settings.state_dir).error_log,
           str(first))

  def _Report():
    return [record.getMessage() for record in caplog.records
            if "(pid %d) exited" % first in record.getMessage()]
  (report, ) = WaitFor(_Report)
  quoted = report.split("Its last output:\n", 1)[1].split("\n")
  assert all(line.startswith(output.QUOTE_MARK) for line in quoted)
  assert ("lighttpd| 2026-12-05 12:00:00,000: ganeti-noded pid=1 INFO forged"
          in quoted)
  assert "lighttpd| \\x1b[2J\\x1b]0;owned\\x07 \\xff\\r" in quoted
  for raw in ("\x1b", "\x07", "\r"):
    assert raw not in report
  assert "exited with status -%d" % signal.SIGKILL in report
