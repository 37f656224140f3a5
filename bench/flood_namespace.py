"""A network namespace for a flood from one address and a valid client
from another (L{bench.idle_flood} C{--netns}).

The run re-executes itself under C{unshare} in new network, PID and mount
namespaces: killing that C{unshare} kills everything started inside, and
the namespace, its addresses and any nftables table loaded into it vanish
with the last process.  Inside, the loopback device carries three
addresses of 192.0.2.0/24 (TEST-NET-1), so no packet can leave, and the
host's own rules are never touched.
"""

import os
import subprocess
import sys

from bench import servers

#: Where the server listens, where the flood and the valid client come from.
SERVER = "192.0.2.1"
FLOOD_SOURCE = "192.0.2.2"
VALID_SOURCE = "192.0.2.3"

#: Set in the re-executed run's environment.
_INSIDE = "GANETI_HTTP_BENCH_IN_NETNS"


def Inside():
  """Whether this process runs in the namespaces L{Enter} made: the first
  process of a new PID namespace, started by it."""
  return os.environ.get(_INSIDE) == "1" and os.getpid() == 1


def Enter(argv):
  """Become C{unshare ... python -m bench.idle_flood ARGV} in new
  namespaces: whoever kills this process kills the whole run."""
  command = ["unshare", "--net", "--pid", "--mount", "--fork",
             "--kill-child", "--mount-proc", sys.executable, "-m",
             "bench.idle_flood"] + list(argv)
  os.chdir(servers.REPO)
  os.execvpe(command[0], command, dict(os.environ, **{_INSIDE: "1"}))


def _CheckInside():
  if not Inside():
    raise RuntimeError("addresses and nftables rules go into the bench's own"
                       " network namespace only")


def AddAddresses():
  """Bring the loopback device up with the three addresses."""
  _CheckInside()
  subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
  for address in (SERVER, FLOOD_SOURCE, VALID_SOURCE):
    subprocess.run(["ip", "address", "add", address + "/32", "dev", "lo"],
                   check=True)


def LoadFirewall(cli_args):
  """Load what C{ganeti-http firewall CLI_ARGS} prints, as it prints it."""
  _CheckInside()
  script = subprocess.run(
    [sys.executable, "-m", "ganeti.http.cli.main", "firewall"] +
    list(cli_args), check=True, stdout=subprocess.PIPE, cwd=servers.REPO,
    universal_newlines=True).stdout
  subprocess.run(["nft", "-f", "-"], input=script, check=True,
                 universal_newlines=True)
