"""The commands of docs/operations.md, and whether a test bed ran them.

docs/operations.md promises that every command in it is run by the
cluster test bed.  This module reads the commands out of the document and
compares them with the record of what a test bed ran inside its nodes
(L{node.Node} appends every command line to its C{command_log}).

How the document marks commands (the rule the document states too):

- a fenced block whose info string is C{sh BED} holds commands, one per
  line (a line ending in a backslash continues on the next; C{#} starts a
  comment); C{BED} names the test run that runs them: C{testbed} (the
  single-node test bed, C{make testbed} and C{make test}) or
  C{migration-test} (the three-node rolling migration);
- a fenced block with the info string C{text} is not commands: output,
  or the content of a file;
- any other code block (no info string, another one, or indented by four
  spaces) is an error, so that a command cannot slip in unchecked.

When a documented command counts as run: both it and every recorded
command line are split into simple commands at C{&&}, C{||}, C{;} and
C{|}, and into words as the shell splits them; each simple command of
the documented one must equal a recorded simple command, word for word,
except that node names C{nodeN.example.com} become C{NODE} in both (the
single node is node1, the examples name others) and that the recorded one
may carry options of the form C{--NAME=VALUE} the documented one lacks
(e.g. the migration's C{--verify-ignore=ENODESETUP}).
"""

import json
import os
import re
import shlex

DOCUMENT = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir,
                        "docs", "operations.md")

#: The test runs a command block may name, by their make target.
BEDS = ("testbed", "migration-test")

_OPERATORS = ("&&", "||", ";", "|")
_NODE_NAME = re.compile(r"\bnode\d+\.example\.com\b")
_EXTRA_OPTION = re.compile(r"^--[\w-]+=")
_FENCE = re.compile(r"^```(.*)$")
_INDENTED = re.compile(r"^ {4,}\S")


class DocumentError(Exception):
  """docs/operations.md has a code block this module cannot classify."""


class DocumentedCommand(object):
  """One command of the document: its text, line number and test run."""

  def __init__(self, text, line, bed):
    self.text = text
    self.line = line
    self.bed = bed

  def __str__(self):
    return "line %d: %s" % (self.line, self.text)


def Commands(text):
  """The L{DocumentedCommand}s of a document's C{sh BED} blocks.

  @raise DocumentError: a code block is neither commands nor C{text}
  """
  commands = []
  bed = None  # in a fence: the block's test run, or "" for output
  pending = None
  previous_blank = True
  for (number, line) in enumerate(text.splitlines(), 1):
    fence = _FENCE.match(line)
    if fence and bed is None:
      bed = _BlockBed(fence.group(1).split(), number)
    elif fence:
      if pending:
        raise DocumentError("line %d: the block ends in a continuation"
                            % number)
      bed = None
    elif bed:
      if pending:
        pending.text += " " + line.strip()
      elif line.strip() and not line.strip().startswith("#"):
        pending = DocumentedCommand(line.strip(), number, bed)
      if pending and pending.text.endswith("\\"):
        pending.text = pending.text[:-1].rstrip()
      elif pending:
        commands.append(pending)
        pending = None
    elif bed is None and previous_blank and _INDENTED.match(line):
      raise DocumentError("line %d: an indented code block; fence it as"
                          " ```sh BED (commands) or ```text (output, a"
                          " file)" % number)
    previous_blank = not line.strip()
  if bed is not None:
    raise DocumentError("a fenced block is not closed")
  return commands


def _BlockBed(info, number):
  """A block's test run from its info string's words; "" for output."""
  if info == ["text"]:
    return ""
  if len(info) == 2 and info[0] == "sh" and info[1] in BEDS:
    return info[1]
  raise DocumentError("line %d: a code block with info string %r; use"
                      " ```sh BED (BED: %s) or ```text"
                      % (number, " ".join(info), " or ".join(BEDS)))


def TextBlock(first_line):
  """The content of docs/operations.md's C{text} block whose first line
  is C{first_line} (a file the document shows), with its final newline.

  @raise DocumentError: no such block
  """
  with open(DOCUMENT) as document:
    blocks = re.findall(r"^```text\n(.*?)^```$", document.read(),
                        re.MULTILINE | re.DOTALL)
  for block in blocks:
    if block.splitlines()[:1] == [first_line]:
      return block
  raise DocumentError("no text block starting with %r" % first_line)


def DocumentCommands(bed):
  """The commands of docs/operations.md that C{bed} must run."""
  with open(DOCUMENT) as document:
    return [command for command in Commands(document.read())
            if command.bed == bed]


def SimpleCommands(command_line):
  """The simple commands of a shell command line, each a tuple of its
  words with node names replaced by C{NODE}."""
  lexer = shlex.shlex(command_line, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  simple = [[]]
  for word in lexer:
    if word in _OPERATORS:
      simple.append([])
    else:
      simple[-1].append(_NODE_NAME.sub("NODE", word))
  return [tuple(words) for words in simple if words]


def _Matches(documented, recorded):
  """Whether simple command C{recorded} is C{documented}, give or take
  C{--NAME=VALUE} options the documented one lacks."""
  kept = tuple(word for word in recorded
               if word in documented or not _EXTRA_OPTION.match(word))
  return kept == documented


def NotRun(commands, recorded_lines):
  """The documented C{commands} some simple command of which no
  recorded command line contains (as L{_Matches} compares them)."""
  recorded = set()
  for line in recorded_lines:
    recorded.update(SimpleCommands(line))
  return [command for command in commands
          if not all(any(_Matches(simple, done) for done in recorded)
                     for simple in SimpleCommands(command.text))]


def ReadLog(path):
  """The command lines of a L{node.Node} command log (none if missing)."""
  if not os.path.exists(path):
    return []
  with open(path) as log:
    return [json.loads(line)["command"] for line in log if line.strip()]
