"""docs/operations.md's "What each error means" against what the code
writes: the messages of C{ganeti-http check} and C{set} are made to
happen here (real files, real C{lighttpd -tt}), and each line printed must
be one the document shows, and each one the document shows under C{check}
and C{set} must be printed by one of them (but for those listed in
L{NOT_MADE_HERE}, with the reason).

In the document a message is a line of a C{text} block; C{<...>} stands
for any text (a path, a name, nothing; see L{_Pattern}).
"""

import os
import re
import shutil

import pytest

from tests.new.lighttpd_helpers import REPO, scratch_dir  # noqa: F401
from tests.new.test_ganeti_http_cli import _Certificate
from tests.new.test_ganeti_http_cli import node  # noqa: F401 (a fixture)

DOCUMENT = os.path.join(REPO, "docs", "operations.md")
SECTION = "## What each error means"
CHECK = "`ganeti-http check`"
SET = "`ganeti-http set` and `unset`"

#: Messages of the C{check} and C{set} parts this test does not make
#: happen, and why.
NOT_MADE_HERE = {
  "<daemon>: its certificate <path>: <user> cannot enter <directory>":
    "the daemon's user is RAPI's gnt-rapi, an account of Ganeti's package",
  "<daemon>: its certificate <path>: <user> cannot read it (owner <uid>,"
  " group <gid>, mode <mode>)": "the same (made when gnt-rapi exists)",
  "<daemon>: the account <user> it runs as does not exist":
    "made unless gnt-rapi exists: test_rapi_certificate",
  "<daemon>: cannot check its certificate <path>: <reason>":
    "a stat of a readable directory failing",
  "<daemon>: runtime-dir: <reason>": "the settings' own check of the"
    " directory comes first for root (noded); RAPI needs gnt-rapi",
  "<daemon>: runtime-dir <path>: <reason>": "the same",
  "<daemon>: lighttpd not found on PATH nor as /usr/sbin/lighttpd":
    "lighttpd is installed (make setup)",
  "ganeti-http: Not changing <path>: the result would be malformed"
  " (<reason>)": "set writes only lines that parse",
}


def _Part(title):
  """The text of subsection C{title} of the errors section."""
  with open(DOCUMENT) as document:
    text = document.read()
  section = text.split("\n%s\n" % SECTION, 1)[1].split("\n## ", 1)[0]
  return section.split("\n### %s\n" % title, 1)[1].split("\n### ", 1)[0]


def _Messages(text):
  """The lines of the C{text} blocks of C{text}."""
  return [line for block in re.findall(r"^```text\n(.*?)^```$", text,
                                       re.MULTILINE | re.DOTALL)
          for line in block.splitlines()]


def _Pattern(message):
  """A regular expression for a documented message: C{<...>} is any text,
  at the start of the message one word (a path or a name), so that a
  message beginning C{<directory> does not exist} stays one message."""
  pieces = re.split(r"(<[^>]+>)", message)
  return "".join(
    (r"\S+" if number == 1 and not pieces[0] else ".*")
    if number % 2 else re.escape(piece)
    for (number, piece) in enumerate(pieces))


def _AllMessages():
  with open(DOCUMENT) as document:
    section = document.read().split("\n%s\n" % SECTION, 1)[1]
  return _Messages(section.split("\n## ", 1)[0])


def _Documented(line):
  """Whether C{line} is a documented message (in any part; a daemon's
  start errors also with C{DAEMON: } before them, as check prints them)."""
  return any(re.fullmatch(r"(\w+: )?" + _Pattern(message), line)
             for message in _AllMessages())


def _CheckLines(node):
  return node.Run("check", expect=1).stdout.splitlines()


def _MadeLines(node, scratch_dir):  # noqa: F811
  """The lines of every check and set problem this test makes."""
  lines = []
  # the flag file
  node.Write(node.config, "[backends]\nnoded = fast-cgi\nnode = fastcgi\n"
             "[fastcgi:rapid]\n")
  lines += _CheckLines(node)
  node.Write(node.config, "[backends\nnoded = fastcgi\n")
  lines += _CheckLines(node)
  lines += node.Run("set", "noded", "legacy", expect=1).stderr.splitlines()
  os.unlink(node.config)
  os.mkdir(node.config)
  lines += _CheckLines(node)
  os.rmdir(node.config)
  node.Write(node.config, "")
  node.Write(node.defaults, "GANETI_HTTP_BACKEND_NODED=$BACKEND\n")
  lines += _CheckLines(node)
  node.Write(node.defaults, "")
  node.environ["GANETI_HTTP_BACKEND_NODED"] = "fast-cgi"
  lines += _CheckLines(node)
  del node.environ["GANETI_HTTP_BACKEND_NODED"]
  # the command line
  for args in (("set", "nodedx", "fastcgi"), ("set", "noded", "fast")):
    lines += node.Run(*args, expect=2).stderr.splitlines()[-1:]
  # the certificate
  lines += _CheckLines(node)
  _Certificate(node)
  # the fastcgi backend's settings and lighttpd
  settings = ("[backends]\nnoded = fastcgi\n[fastcgi]\n"
              "frontend-user = www-data\nruntime-dir = %s\n" % scratch_dir)
  node.Write(node.config, settings + "frontend-group = no-such-group\n")
  lines += _CheckLines(node)
  node.Write(node.config, settings.replace("www-data", "no-such-user-here"))
  lines += _CheckLines(node)
  node.Write(node.config, settings + "lighttpd = /bin/no-such-lighttpd\n")
  lines += _CheckLines(node)
  node.Write(node.config, settings + "processes = many\n")
  lines += _CheckLines(node)
  node.Write(node.config, settings)
  for (mode, owner) in ((0o777, 0), (0o711, 65534)):
    os.chmod(scratch_dir, mode)
    os.chown(scratch_dir, owner, -1)
    try:
      lines += _CheckLines(node)
    finally:
      os.chmod(scratch_dir, 0o711)
      os.chown(scratch_dir, 0, -1)
  good = node.Read(node.certificate)
  node.Write(node.certificate, "not a certificate\n")
  lines += _CheckLines(node)
  node.Write(node.certificate, good)
  assert node.Run("check").stdout == "no problem found\n"
  return lines


def test_documented_check_and_set_messages_are_what_the_code_prints(
    node, scratch_dir):  # noqa: F811
  lines = _MadeLines(node, scratch_dir)
  undocumented = [line for line in lines if not _Documented(line)]
  assert not undocumented, (
    "printed, but not in docs/operations.md (%s):\n%s"
    % (SECTION, "\n".join(undocumented)))
  documented = _Messages(_Part(CHECK)) + _Messages(_Part(SET))
  assert set(NOT_MADE_HERE) <= set(documented), "NOT_MADE_HERE is stale"
  never_printed = [message for message in documented
                   if message not in NOT_MADE_HERE and
                   not any(re.search(_Pattern(message), line)
                           for line in lines)]
  assert not never_printed, (
    "in docs/operations.md, but not printed by the code:\n%s"
    % "\n".join(never_printed))


def test_rapi_certificate(node):
  """rapi.pem readable by root only: the gnt-rapi account cannot read it,
  or (no Ganeti installed here) does not exist; either line is the
  document's."""
  _Certificate(node)
  rapi = os.path.join(os.path.dirname(node.certificate), "rapi.pem")
  shutil.copyfile(node.certificate, rapi)
  os.chmod(rapi, 0o600)
  (line,) = _CheckLines(node)
  assert line.startswith("rapi: ") and _Documented(line), line
