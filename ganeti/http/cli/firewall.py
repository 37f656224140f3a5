"""The nftables table that limits how many connections one source address
holds to each daemon's port (docs/operations.md, "Connections per
address").

lighttpd 1.4.69 accepts a connection before it knows anything about it and
has no per-address limit before a request head is read, so one address can
fill all of its connections with handshakes it never finishes
(docs/lighttpd.md, "Limits").  The kernel counts a source address's
connections before lighttpd sees them: this table refuses a new one (a TCP
reset) while that address already has more than the limit open.

The table is named L{TABLE} and holds only these rules, so loading it again
replaces it and never touches the operator's own tables.  Nothing here
loads it: the operator does (C{nft -f}, or an include at boot).
"""

#: Family and name of the table: its own, in both address families.
TABLE = "inet ganeti-http"

#: Connections one source address may hold to one daemon's port.  Who
#: talks to the node daemon is the master node (and during a failover a
#: master candidate), each of its processes from one address: a Ganeti job
#: process keeps at most 8 idle connections per node
#: (C{client_connections.MAX_IDLE_MULTIS}) and has about one in flight, and
#: Ganeti 3.0 runs up to 20 jobs at once by default (C{max_running_jobs}),
#: beside its daemons, watcher and commands: about 200 connections from the
#: busiest address.  512 leaves that room twice and more; lighttpd's room
#: (16,384 connections, 10,000 with a hard limit of 20,000 descriptors)
#: then takes 20 or more addresses to fill.
DEFAULT_MAX_PER_ADDRESS = 512

#: Most source addresses remembered per daemon and address family; the
#: kernel forgets an address once it holds no connection.  When the set
#: is full, a new address's connections are not limited (nothing refused).
MAX_ADDRESSES = 65535

#: (set suffix, set type, the match of the source address) per family.
_FAMILIES = (("ipv4", "ipv4_addr", "ip saddr"),
             ("ipv6", "ipv6_addr", "ip6 saddr"))


def CheckMaxPerAddress(value):
  """The limit as an int.

  @raise ValueError: not a whole number from 1 to 2**31-1
  """
  number = int(value)
  if not 1 <= number < 2 ** 31:
    raise ValueError("must be a number of connections from 1 to %d" %
                     (2 ** 31 - 1))
  return number


def Render(ports, max_per_address=DEFAULT_MAX_PER_ADDRESS):
  """The nftables script, loadable with C{nft -f} as it is.

  @param ports: [(daemon name, TCP port)]
  @param max_per_address: connections one address may hold per port
  """
  max_per_address = CheckMaxPerAddress(max_per_address)
  lines = [
    "#!/usr/sbin/nft -f",
    "# Made by \"ganeti-http firewall\": at most %d connections per source"
    " address" % max_per_address,
    "# to each port below; a further one is refused with a TCP reset.",
    "# Loading it again replaces this table only (created, deleted, made"
    " anew:",
    "# one transaction).",
    "table %s" % TABLE,
    "delete table %s" % TABLE,
    "table %s {" % TABLE,
    ]
  for (name, _) in ports:
    for (suffix, set_type, _) in _FAMILIES:
      lines.append("  set %s-%s { type %s; size %d; flags dynamic; }" %
                   (name, suffix, set_type, MAX_ADDRESSES))
  lines.extend([
    "  chain input {",
    "    type filter hook input priority filter; policy accept;",
    ])
  for (name, port) in ports:
    for (suffix, _, source) in _FAMILIES:
      lines.append(
        "    tcp dport %d ct state new add @%s-%s { %s ct count over %d }"
        " reject with tcp reset" % (port, name, suffix, source,
                                    max_per_address))
  lines.extend(["  }", "}"])
  return "\n".join(lines) + "\n"
