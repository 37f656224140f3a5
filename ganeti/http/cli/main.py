"""C{ganeti-http}: see and set which HTTP backend each Ganeti daemon runs.

Exit status: 0 done (for C{check}: no problem found); 1 C{check} found
problems, or a command could not do its job (the reason on standard
error); 2 the command line is wrong.
"""

import argparse
import json
import subprocess
import sys

import ganeti.http as ganeti_http
from ganeti.http.backends import daemons
from ganeti.http.backends import selection
from ganeti.http.cli import checks
from ganeti.http.cli import firewall
from ganeti.http.cli import flag_file
from ganeti.http.cli import preview
from ganeti.http.cli import status

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_DESCRIPTION = """\
See and set which HTTP backend each Ganeti daemon that serves HTTP
(%(daemons)s) runs: "legacy" (a threaded Python server) or "fastcgi"
(lighttpd in front of the daemon).

Where a daemon's backend comes from, first match wins:
  1. the variable GANETI_HTTP_BACKEND_<DAEMON>,
  2. the daemon's key in section [backends] of %(config)s,
  3. the variable GANETI_HTTP_BACKEND,
  4. that section's key "default",
  5. legacy.
A variable counts from the daemon's environment, else from an assignment
in %(defaults)s.  A daemon reads all this when it starts.
"""

_EPILOG = """\
exit status: 0 done (check: no problem); 1 check found problems, or the
command failed (the reason on standard error); 2 wrong command line.

examples:
  ganeti-http status
  ganeti-http set noded fastcgi --restart
  ganeti-http check && ganeti-http unset noded
  ganeti-http firewall | nft -f -
"""


def _Names(names):
  """The L{daemons.HttpDaemon}s called C{names} (all when empty)."""
  try:
    return [daemons.Find(name) for name in names] or list(daemons.DAEMONS)
  except KeyError as err:
    raise _UsageError("%s is not a Ganeti daemon that serves HTTP (known:"
                      " %s)" % (err, ", ".join(daemons.NAMES)))


class _UsageError(Exception):
  """The command line names something that does not exist."""


def _Pids(pids):
  return ", ".join(str(pid) for pid in pids) or "none"


def _PrintStatus(entry):
  configured = entry["configured"]
  running = entry["running"]
  print("%s (%s):" % (entry["daemon"], entry["program"]))
  if configured["error"]:
    print("  configured: unknown: %s" % configured["error"])
  else:
    print("  configured: %s (from %s)" % (configured["backend"],
                                          configured["source"]))
  if not running["running"]:
    print("  running:    not running")
  elif running["backend"] is None:
    print("  running:    pid %s, backend unknown (no status published)" %
          running["pid"])
  else:
    print("  running:    %s (chosen from %s), ganeti-http-shim %s" %
          (running["backend"], running["source"], running["shim_version"]))
    address = running["address"] or ["?", "?"]
    print("  listening:  %s port %s%s" % (address[0], address[1],
                                          " (TLS)" if running["tls"] else ""))
    print("  pids:       daemon %s, lighttpd %s, workers %s" %
          (running["pid"], _Pids(running["lighttpd_pids"]),
           _Pids(running["worker_pids"])))
  for reason in entry["restart_needed"]:
    print("  restart needed: %s" % reason)
  for problem in entry["problems"]:
    print("  problem:    %s" % problem)


def _Status(args):
  entries = [status.Collect(daemon) for daemon in _Names(args.daemons)]
  shell = status.ShellVariables()
  if args.json:
    json.dump({"installed_version": ganeti_http.SHIM_VERSION,
               "daemons": entries, "environment_variables": shell},
              sys.stdout, indent=1, sort_keys=True)
    print()
    return EXIT_OK
  print("ganeti-http-shim %s installed" % ganeti_http.SHIM_VERSION)
  if shell:
    print("note: this shell sets %s; a daemon started from it gets them" %
          ", ".join(shell))
  for entry in entries:
    _PrintStatus(entry)
  return EXIT_OK


def _Restart(daemon, dry_run):
  """Print (and unless C{dry_run}, run) the commands that restart
  C{daemon}; return an exit status."""
  commands = daemons.RestartCommands(daemon)
  line = " && ".join(" ".join(command) for command in commands)
  if dry_run:
    print("%s: restart it to take effect (or use --restart): %s" %
          (daemon.name, line))
    return EXIT_OK
  if not status.Collect(daemon)["running"]["running"]:
    print("%s: not running here; it takes effect when it starts" %
          daemon.name)
    return EXIT_OK
  print("%s: restarting: %s" % (daemon.name, line))
  for command in commands:
    result = subprocess.run(command, stdin=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
      print("%s: %s failed (exit status %d)" % (daemon.name,
                                                " ".join(command),
                                                result.returncode),
            file=sys.stderr)
      return EXIT_FAILED
  return EXIT_OK


def _Edit(args, value):
  """Set (C{value} a backend) or remove (None) the daemon's key; say what
  the daemons affected are configured for now, and restart them."""
  if args.daemon == selection.CONFIG_DEFAULT_KEY:
    (key, affected) = (selection.CONFIG_DEFAULT_KEY, list(daemons.DAEMONS))
  else:
    affected = _Names([args.daemon])
    key = affected[0].name
  path = selection.ConfigPath()
  changed = flag_file.SetBackend(path, key, value)
  if value is None:
    print("%s: key %r %s section [%s]" % (path, key,
                                          "removed from" if changed else
                                          "was not in",
                                          selection.CONFIG_SECTION))
  else:
    print("%s: %s = %s%s" % (path, key, value,
                             "" if changed else " (already so)"))
  exit_status = EXIT_OK
  for daemon in affected:
    (backend, source) = selection.ResolveBackend(daemon.name)
    print("%s: configured backend %s (from %s)" % (daemon.name, backend,
                                                    source))
    if value is not None and backend != value:
      print("%s: warning: %s overrides the file" % (daemon.name, source))
    exit_status = max(exit_status, _Restart(daemon, not args.restart))
  return exit_status


def _Set(args):
  return _Edit(args, args.backend)


def _Unset(args):
  return _Edit(args, None)


def _Check(args):
  problems = checks.Run([daemon.name for daemon in _Names(args.daemons)])
  lines = ["%s: %s" % (name, problem) if name else problem
           for (name, problem) in problems]
  if args.json:
    json.dump({"problems": [{"daemon": name, "problem": problem}
                            for (name, problem) in problems]},
              sys.stdout, indent=1, sort_keys=True)
    print()
  else:
    for line in lines:
      print(line)
    if not lines:
      print("no problem found")
  return EXIT_FAILED if problems else EXIT_OK


def _Config(args):
  (daemon,) = _Names([args.daemon])
  running = status.Collect(daemon)["running"]
  (config, settings, _) = preview.Render(daemon, address=running["address"])
  print("# lighttpd configuration of %s on the fastcgi backend, as it would"
        " start now;" % daemon.name)
  print("# %s is the private directory it makes at each start." %
        preview.PlaceholderStateDir(daemon, settings))
  sys.stdout.write(config)
  return EXIT_OK


def _Firewall(args):
  ports = [(daemon.name, daemons.Port(daemon))
           for daemon in _Names(args.daemons)]
  sys.stdout.write(firewall.Render(ports, args.max_per_address))
  return EXIT_OK


def _MaxPerAddress(text):
  try:
    return firewall.CheckMaxPerAddress(text)
  except ValueError as err:
    raise argparse.ArgumentTypeError("%r: %s" % (text, err))


def _Parser():
  parser = argparse.ArgumentParser(
    prog="ganeti-http",
    description=_DESCRIPTION % {"daemons": ", ".join(daemons.NAMES),
                                "defaults": selection.DEFAULTS_FILE,
                                "config": selection.DEFAULT_CONFIG_FILE},
    epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--version", action="version",
                      version="ganeti-http-shim %s" % ganeti_http.SHIM_VERSION)
  commands = parser.add_subparsers(dest="command", metavar="COMMAND")
  commands.required = True

  command = commands.add_parser(
    "status", help="configured and running backend of each daemon",
    description="For each daemon (default: all): the configured backend and"
    " where it comes from, the backend it runs (as the daemon published it"
    " in its status file), its pids and address.")
  command.add_argument("daemons", nargs="*", metavar="DAEMON")
  command.add_argument("--json", action="store_true",
                       help="print a JSON object instead")
  command.set_defaults(run=_Status)

  for (name, run, text) in (("set", _Set, "set DAEMON's backend in"),
                            ("unset", _Unset, "remove DAEMON's line from")):
    command = commands.add_parser(
      name, help="%s the INI file" % text,
      description="%s section [backends] of the INI file (%s), keeping the"
      " rest of the file as it is; DAEMON \"default\" is the key for every"
      " daemon without one.  Then print the restart that makes it take"
      " effect." % (text[0].upper() + text[1:], selection.DEFAULT_CONFIG_FILE))
    command.add_argument("daemon", metavar="DAEMON")
    if name == "set":
      command.add_argument("backend", choices=sorted(selection.BACKENDS),
                           metavar="BACKEND",
                           help=" or ".join(sorted(selection.BACKENDS)))
    command.add_argument("--restart", action="store_true",
                         help="restart the daemon (if it runs here) with"
                         " Ganeti's daemon-util")
    command.set_defaults(run=run)

  command = commands.add_parser(
    "check", help="what would stop a daemon at its next start",
    description="Check now what would stop a daemon at its next start: the"
    " files' syntax and values, certificates, the frontend account and"
    " directories, and each fastcgi daemon's lighttpd configuration through"
    " lighttpd -tt.  One line per problem; exit status 1 if there is one.")
  command.add_argument("daemons", nargs="*", metavar="DAEMON")
  command.add_argument("--json", action="store_true",
                       help="print a JSON object instead")
  command.set_defaults(run=_Check)

  command = commands.add_parser(
    "config", help="the lighttpd configuration DAEMON would run",
    description="Print the lighttpd configuration DAEMON would run on the"
    " fastcgi backend if it started now.")
  command.add_argument("daemon", metavar="DAEMON")
  command.set_defaults(run=_Config)

  command = commands.add_parser(
    "firewall", help="an nftables table limiting connections per address",
    description="Print an nftables table (%s, its own: loading it again"
    " replaces it and nothing else) that refuses a new connection to a"
    " daemon's port (default: every daemon's) from a source address, IPv4"
    " or IPv6, already holding more than MAX of them.  lighttpd has no such"
    " limit before a request arrives.  Nothing is loaded: pipe it into"
    " \"nft -f -\", or save it and include it at boot"
    " (docs/operations.md)." % firewall.TABLE)
  command.add_argument("daemons", nargs="*", metavar="DAEMON")
  command.add_argument("--max-per-address", type=_MaxPerAddress,
                       default=firewall.DEFAULT_MAX_PER_ADDRESS,
                       metavar="MAX",
                       help="connections one address may hold to one"
                       " daemon (default: %(default)s)")
  command.set_defaults(run=_Firewall)
  return parser


def Main(argv=None):
  """Run the command line C{argv} (default: C{sys.argv[1:]}); return the
  exit status."""
  parser = _Parser()
  args = parser.parse_args(argv)
  try:
    return args.run(args)
  except _UsageError as err:
    parser.error(str(err))
  except (selection.BackendFlagError, OSError) as err:
    print("ganeti-http: %s" % checks.OneLine(err), file=sys.stderr)
    return EXIT_FAILED
  return EXIT_FAILED


def main():
  """The console script's entry point."""
  sys.exit(Main())


if __name__ == "__main__":
  main()
