"""The rule by which docs/operations.md's commands are matched with those
a test bed ran (L{documented_commands}); no node is started here."""

import json

import pytest

from tests.cluster import documented_commands as dc

DOCUMENT = """# Title

Text, then commands:

```sh testbed
ganeti-http set noded fastcgi   # a comment
# a comment line
gnt-cluster command -n node3.example.com \\
    "a && b"
```

```text
output, not a command
```

```sh migration-test
python3 rolling_migration.py node2.example.com:noded=legacy
```
"""


def _Texts(commands):
  return [(command.bed, command.text) for command in commands]


def test_commands_of_each_block():
  assert _Texts(dc.Commands(DOCUMENT)) == [
    ("testbed", "ganeti-http set noded fastcgi   # a comment"),
    ("testbed", 'gnt-cluster command -n node3.example.com "a && b"'),
    ("migration-test",
     "python3 rolling_migration.py node2.example.com:noded=legacy"),
  ]


@pytest.mark.parametrize("block", [
  "```\nls\n```\n",                 # no info string
  "```bash\nls\n```\n",             # not sh BED
  "```sh elsewhere\nls\n```\n",     # an unknown test run
  "Text.\n\n    ls /etc\n",          # an indented code block
  "```sh testbed\nls \\\n```\n",    # a continuation into the fence
  "```sh testbed\nls\n",            # never closed
])
def test_unclassified_blocks_are_errors(block):
  with pytest.raises(dc.DocumentError):
    dc.Commands(block)


def test_list_continuation_is_no_code_block():
  assert dc.Commands("1. a step\n   more of it\n") == []


def _Missing(documented, recorded):
  commands = dc.Commands("```sh testbed\n%s\n```\n" % documented)
  return [command.text for command in dc.NotRun(commands, recorded)]


@pytest.mark.parametrize("recorded", [
  ["ganeti-http set noded fastcgi"],
  ["ganeti-http set noded legacy", "ganeti-http set noded fastcgi"],
  ["cd /root && ganeti-http set noded fastcgi"],
])
def test_a_command_that_ran(recorded):
  assert _Missing("ganeti-http set noded fastcgi", recorded) == []


@pytest.mark.parametrize("recorded", [
  [],
  ["ganeti-http set noded legacy"],
  ["ganeti-http set noded"],
  ["ganeti-http set noded fastcgi --restart"],  # an option, not --NAME=VALUE
  ["echo ganeti-http set noded fastcgi"],
])
def test_a_command_that_did_not_run(recorded):
  assert _Missing("ganeti-http set noded fastcgi", recorded) == [
    "ganeti-http set noded fastcgi"]


def test_node_names_stand_for_any_node():
  assert _Missing("gnt-cluster command -n node3.example.com date",
                  ["gnt-cluster command -n node1.example.com date"]) == []
  assert _Missing("gnt-cluster command -n node3.example.com date",
                  ["gnt-cluster command -n other.example.com date"]) != []


def test_the_test_bed_may_add_name_value_options():
  assert _Missing("python3 rolling_migration.py node3.example.com:noded=fastcgi",
                  ["python3 rolling_migration.py --verify-ignore=ENODESETUP"
                   " node1.example.com:noded=fastcgi"]) == []


def test_joined_commands_may_run_apart_but_all_must_run():
  documented = "daemon-util stop noded && daemon-util start noded"
  assert _Missing(documented, ["daemon-util stop noded",
                               "daemon-util start noded"]) == []
  assert _Missing(documented, ["daemon-util stop noded"]) == [documented]


def test_the_log_a_node_writes(tmp_path):
  path = tmp_path / "commands.log"
  path.write_text("".join(json.dumps({"node": "n", "command": command}) + "\n"
                          for command in ("a 'b c'", "multi\nline")))
  assert dc.ReadLog(str(path)) == ["a 'b c'", "multi\nline"]


def test_operations_md_parses_and_names_both_test_runs():
  """A malformed docs/operations.md fails here, before any node starts."""
  for bed in dc.BEDS:
    assert dc.DocumentCommands(bed), "no %s commands in the document" % bed


def test_the_files_the_document_shows():
  unit = dc.TextBlock("[Unit]")
  assert unit.endswith("WantedBy=multi-user.target\n")
  with pytest.raises(dc.DocumentError):
    dc.TextBlock("[Unitx]")
