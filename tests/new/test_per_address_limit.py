"""The per-address connection limit C{ganeti-http firewall} prints
(issue 14 §4, docs/operations.md "Connections per address").

lighttpd 1.4.69 has no per-address limit before a request head, and at
most half of its file descriptors become connections (10,000 with a hard
limit of 20,000), so one address trickling a ClientHello on that many
connections locks every valid client out.  The kernel's limit, loaded
exactly as the command prints it, is what lets the valid client in.

Everything runs in namespaces the run makes (L{bench.flood_namespace}):
the fastcgi backend's lighttpd on 192.0.2.1 at the node daemon's port,
the flood from 192.0.2.2, the valid client (the node certificate) from
192.0.2.3.  No rule ever reaches the host's own namespace.
"""

import json
import subprocess
import sys
import textwrap

import pytest

from ganeti.http.backends.fastcgi.lighttpd import limits as lighttpd_limits
from ganeti.http.backends import daemons
from ganeti.http.cli import firewall
from tests.new.lighttpd_helpers import REPO

#: Connections from one address: the issue's 10,000, or more than
#: lighttpd's room here if that is larger, so that without the rule they
#: fill it (the 100 over it wait in the listen queue).
FLOOD = max(10000, lighttpd_limits.MaxConnections(
  lighttpd_limits.ReachableMaxFds()) + 100)

#: A generous bound for one valid request, not a timing being tested:
#: without the rule the valid client waits for as long as the flood lasts.
PROBE_TIMEOUT = 5

#: Seconds between the flood's connections being open and the first valid
#: request: lighttpd may still be accepting connections from its listen
#: queue, and those whose handshake the full queue left unfinished on the
#: server's side complete with their next trickled byte (every 2 s).
SETTLE = 6

#: Seconds the whole run may take before the namespaces are killed.
RUN_TIMEOUT = 240


def _Flood(*options):
  """Run the bench's flood in its own namespaces: FLOOD connections from
  one address trickling a ClientHello (a byte every 2 s, faster than
  lighttpd's 10 s read timeout), then 3 requests of a valid client from
  another; its result."""
  command = [sys.executable, "-m", "bench.idle_flood", "--netns",
             "--connections", str(FLOOD), "--mode", "tls-hello",
             "--trickle", "2", "--hold", "60", "--probes", "3",
             "--interval", "0.2", "--settle", str(SETTLE),
             "--probe-timeout", str(PROBE_TIMEOUT)]
  result = subprocess.run(command + list(options), cwd=REPO,
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=RUN_TIMEOUT)
  assert result.returncode == 0, result.stderr
  return json.loads(result.stdout.splitlines()[-1])


def test_valid_client_answered_while_one_address_floods():
  result = _Flood("--firewall")
  assert result["per_address_limit"] == firewall.DEFAULT_MAX_PER_ADDRESS
  # The kernel let exactly the limit in; the rest were reset
  assert result["held"] == firewall.DEFAULT_MAX_PER_ADDRESS
  assert result["failed"] == 0, result


def test_without_the_rule_the_same_flood_locks_the_valid_client_out():
  result = _Flood()
  assert result["per_address_limit"] is None
  assert result["held"] == FLOOD
  assert result["failed"] == result["probes"], result


#: Run in a network namespace of its own: the command's output saved and
#: included at "boot" by a ruleset shaped like Debian's /etc/nftables.conf
#: with a table of the operator's, then loaded again, then connections from
#: ::1 and 127.0.0.1 to the node daemon's port; prints what happened.
_IN_NAMESPACE = textwrap.dedent(r"""
  import json, os, socket, subprocess, sys, tempfile
  from ganeti.http.backends import daemons
  MAX = int(sys.argv[1])
  run = lambda *args, **kw: subprocess.run(args, check=True,
                                           universal_newlines=True, **kw)
  run("ip", "link", "set", "lo", "up")
  script = run(sys.executable, "-m", "ganeti.http.cli.main", "firewall",
               "--max-per-address", str(MAX),
               stdout=subprocess.PIPE).stdout
  with tempfile.TemporaryDirectory() as directory:
    saved = os.path.join(directory, "ganeti-http.nft")
    with open(saved, "w") as handle:
      handle.write(script)
    conf = os.path.join(directory, "nftables.conf")
    with open(conf, "w") as handle:
      handle.write("flush ruleset\ntable inet filter {\n chain input {\n"
                   "  type filter hook input priority filter;\n"
                   "  tcp dport 9 counter accept\n }\n}\n"
                   "include \"%s\"\n" % saved)
    run("nft", "-f", conf)
  run("nft", "-f", "-", input=script)
  port = daemons.Port(daemons.Find("noded"))
  accepted = {}
  for (family, address) in ((socket.AF_INET6, "::1"),
                            (socket.AF_INET, "127.0.0.1")):
    server = socket.socket(family)
    server.bind((address, port))
    server.listen(64)
    held = []
    for _ in range(MAX + 3):
      client = socket.socket(family)
      try:
        client.connect((address, port))
        held.append(client)
      except ConnectionRefusedError:
        client.close()
    accepted[address] = len(held)
  listing = run("nft", "list", "ruleset", stdout=subprocess.PIPE).stdout
  print(json.dumps({"accepted": accepted, "ruleset": listing}))
""")


def test_limit_holds_for_ipv6_and_ipv4_and_leaves_other_tables_alone():
  """Included at boot, then loaded again by hand."""
  result = subprocess.run(
    ["unshare", "--net", sys.executable, "-c", _IN_NAMESPACE, "5"],
    cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
    stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
  assert result.returncode == 0, result.stderr
  report = json.loads(result.stdout)
  assert report["accepted"] == {"::1": 5, "127.0.0.1": 5}
  ruleset = report["ruleset"]
  # Loaded twice: one table of ours, the operator's kept
  assert ruleset.count("table inet ganeti-http {") == 1
  assert ruleset.count("ct count over 5 } reject with tcp reset") == 4
  assert "table inet filter {" in ruleset
  assert "tcp dport 9 counter" in ruleset


def test_command_line():
  def Run(*args):
    return subprocess.run(
      [sys.executable, "-m", "ganeti.http.cli.main", "firewall"] +
      list(args), cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
  noded = Run("noded", "--max-per-address", "40")
  assert noded.returncode == 0
  rules = [line for line in noded.stdout.splitlines() if "reject" in line]
  port = str(daemons.Port(daemons.Find("noded")))
  assert [rule.split()[2] for rule in rules] == [port, port]
  assert all("ct count over 40 " in rule for rule in rules)
  assert "tcp dport 5080" in Run().stdout
  for wrong in (["--max-per-address", "0"], ["--max-per-address", "many"],
                ["no-such-daemon"]):
    result = Run(*wrong)
    assert result.returncode == 2, wrong
    assert result.stdout == ""
    assert "ganeti-http" in result.stderr


@pytest.mark.parametrize("value", [0, -1, 2 ** 31])
def test_render_refuses_a_limit_out_of_range(value):
  with pytest.raises(ValueError):
    firewall.Render([("noded", 1811)], value)
