"""C{ganeti-http}, the operator's command (docs/operations.md).

  - L{main}: the command line, its output and exit codes;
  - L{daemons}: Ganeti's daemons that serve HTTP and their files;
  - L{flag_file}: editing the INI file's C{[backends]} section;
  - L{status}: what is configured and what runs, per daemon;
  - L{preview}: the lighttpd configuration a daemon would run;
  - L{checks}: what would stop a daemon at its next start;
  - L{firewall}: the nftables table limiting connections per address.

Nothing here is imported by a daemon.
"""
