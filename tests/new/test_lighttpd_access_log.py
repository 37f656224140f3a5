"""The fastcgi backend's request log, read from lighttpd's access log.

The contract both backends share (the same line for the same request,
refused by lighttpd or not) is in tests/legacy/test_request_log.py; here
what only the fastcgi backend has: a 411 (the legacy backend takes a POST
without length), lighttpd's escapes undone and escaped as Ganeti's line
wants, a line that is not lighttpd's quoted, and a pipe no other process
of the frontend account can write to (docs/security.md).
"""

import logging
import os
import pwd
import subprocess

import pytest

from ganeti.http.backends import selection
from ganeti.http.backends.fastcgi.lighttpd import access_log
from ganeti.http.backends.fastcgi.lighttpd import output
from tests.legacy.test_handler_contract import RecordingHandler
from tests.legacy.test_request_log import RequestLines
from tests.new.lighttpd_helpers import WaitFor
from tests.raw_http import StatusAndClientPort


def test_post_without_length_lighttpd_refuses_is_logged(fastcgi, caplog):
  running = fastcgi(RecordingHandler())
  (status, client_port) = StatusAndClientPort(
    running.port, b"POST /2/instances HTTP/1.1\r\nHost: n\r\n"
    b"Connection: close\r\n\r\n")
  assert status == 411
  running.server.Stop()  # lighttpd writes what it holds when it exits
  assert RequestLines(caplog) == [
    "127.0.0.1:%d POST /2/instances HTTP/1.1 411" % client_port]


@pytest.mark.parametrize(("line", "logged"), [
  (b"127.0.0.1\t40000\t200\tGET /2/info HTTP/1.1",
   "127.0.0.1:40000 GET /2/info HTTP/1.1 200"),
  (b"::1\t40000\t404\tPUT /a?b=c HTTP/1.0",
   "::1:40000 PUT /a?b=c HTTP/1.0 404"),
  # lighttpd's escapes undone, then escaped as on the legacy backend.
  (b'127.0.0.1\t1\t400\tGET /a\\x1B[2J\\r\\x00\\"\\\\\\xE9 HTTP/1.1',
   '127.0.0.1:1 GET /a\\x1b[2J\\x0d\\x00"\\\\\xe9 HTTP/1.1 400'),
  # No request line: lighttpd refused the head before reading it.
  (b"192.0.2.1\t65535\t431\t  ", "192.0.2.1:65535 None 431"),
  (b"192.0.2.1\t2\t501\t  HTTP/1.1", "192.0.2.1:2 None 501"),
])
def test_access_log_lines_become_ganeti_request_lines(caplog, line, logged):
  access_log.LogLine(line)
  assert [record.getMessage() for record in caplog.records] == [logged]
  assert caplog.records[0].levelno == logging.INFO


@pytest.mark.parametrize("line", [
  # A forged line of the daemon's own, with a terminal escape.
  b"2026-12-05 pid=1 INFO 127.0.0.1:1 GET / HTTP/1.1 200\x1b[2J",
  b"127.0.0.1\t1\t200\tGET / HTTP/1.1\n",
  b"127.0.0.1\t1\t200\tGET / HTTP/1.1\r",
  b"127.0.0.1\t1\t200\tGET /\x1b[2J HTTP/1.1",  # lighttpd escapes these
  b"not-an-address\t1\t200\tGET / HTTP/1.1",
  b"127.0.0.1\t70000\t200\tGET / HTTP/1.1",
  b"127.0.0.1\t1\t2000\tGET / HTTP/1.1",
  b"127.0.0.1\t1\t200\tGET / HTTP/1.1\textra",
])
def test_other_lines_are_quoted_as_lighttpds(caplog, line):
  access_log.LogLine(line)
  [record] = caplog.records
  assert record.levelno == logging.WARNING
  assert output.QuoteLine(line) in record.getMessage()
  assert not any(0 <= ord(char) < 0x20 and char != "\n" or
                 0x7f <= ord(char) < 0xa0 for char in record.getMessage())


def test_a_paused_reader_logs_the_rest_of_a_line_once_resumed(caplog):
  """The daemon pauses the reader of a released lighttpd's access log and
  its drainer resumes it (L{ganeti.http.backends.fastcgi.drainer}): what
  lighttpd writes meanwhile, a line begun before included, is logged
  then, each line once and whole."""
  (read_end, write_end) = access_log.Pipe(None)
  reader = access_log.Reader(read_end)
  try:
    os.write(write_end, b"127.0.0.1\t1\t200\tGET /before HTTP/1.1\n"
             b"127.0.0.1\t2\t200\tGET /split HT")
    WaitFor(lambda: "GET /before" in caplog.text)
    reader.Pause()
    os.write(write_end, b"TP/1.1\n127.0.0.1\t3\t504\tPOST /after HTTP/1.1\n")
    reader.Join(0.5)
    assert "/split" not in caplog.text and "/after" not in caplog.text
    reader.Resume()
  finally:
    os.close(write_end)
  reader.Join(10)
  assert [record.getMessage() for record in caplog.records] == [
    "127.0.0.1:1 GET /before HTTP/1.1 200",
    "127.0.0.1:2 GET /split HTTP/1.1 200",
    "127.0.0.1:3 POST /after HTTP/1.1 504"]


def _AccessLogOf(pid):
  """The access log path in lighttpd C{pid}'s environment (/proc/self/...),
  as seen from outside: /proc/PID/fd/N."""
  with open("/proc/%d/environ" % pid, "rb") as handle:
    environment = dict(item.split(b"=", 1)
                       for item in handle.read().split(b"\0") if item)
  path = environment[selection.ENV_ACCESS_LOG.encode()].decode()
  return path.replace("/proc/self/", "/proc/%d/" % pid)


#: Opens argv[1] for writing and writes a forged request line into it.
_FORGE = """
import os, sys
descriptor = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)
os.write(descriptor, b"203.0.113.9\\t1\\t200\\tPOST /2/forged HTTP/1.1\\n")
print("written")
"""


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="lighttpd runs as the frontend account only when"
                    " the daemon is root; CI runs as root")
def test_frontend_account_cannot_write_into_the_access_log(fastcgi, caplog):
  running = fastcgi(RecordingHandler())
  lighttpd = running.server._supervisor.pid  # pylint: disable=protected-access
  path = _AccessLogOf(lighttpd)
  account = pwd.getpwnam(running.server.settings.frontend_user)
  assert os.stat("/proc/%d" % lighttpd).st_uid == account.pw_uid

  def _AsFrontend():
    os.setgroups([])
    os.setgid(account.pw_gid)
    os.setuid(account.pw_uid)

  def _Forge(target):
    return subprocess.run(["/usr/bin/python3", "-c", _FORGE, target],
                          preexec_fn=_AsFrontend, capture_output=True,
                          text=True, timeout=30, check=False)

  # The same attack works against a process of that account that holds a
  # pipe and has not changed its user: what makes lighttpd's safe is that
  # it did (it is not dumpable), not the attack.
  (read_end, write_end) = access_log.Pipe((account.pw_uid, account.pw_gid))
  control = subprocess.Popen(["/bin/sleep", "30"], pass_fds=(write_end, ),
                             preexec_fn=_AsFrontend)
  try:
    os.close(write_end)
    assert _Forge("/proc/%d/fd/%d" % (control.pid, write_end)).stdout == \
      "written\n"
    assert b"/2/forged" in os.read(read_end, 4096)
  finally:
    control.kill()
    control.wait()
    os.close(read_end)

  forged = _Forge(path)
  assert forged.returncode != 0 and "PermissionError" in forged.stderr
  running.server.Stop()
  assert "/2/forged" not in caplog.text

