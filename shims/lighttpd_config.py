"""Print a lighttpd configuration for running a Ganeti daemon behind it.

The template is ganeti.http.backends.fastcgi.lighttpd.config; this renders
it for one daemon, for lighttpd run as a system service (docs/lighttpd.md, mode 2)::

    python3 -m shims.lighttpd_config --port 5080 \\
        --cert /var/lib/ganeti/rapi.pem \\
        --socket /run/lighttpd/ganeti-rapi.sock \\
        --state-dir /var/lib/lighttpd/ganeti-rapi --user www-data \\
        -- /usr/sbin/ganeti-rapi -f > /etc/lighttpd/ganeti-rapi.conf
    lighttpd -tt -f /etc/lighttpd/ganeti-rapi.conf

Without a command after ``--``, the configuration connects to a backend
that listens on ``--socket`` already (started on its own, e.g. by
``spawn-fcgi`` or a unit of its own) instead of spawning it.
"""

import argparse
import os
import sys

from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config


def _Parser():
  parser = argparse.ArgumentParser(
    description=__doc__.split("\n")[0],
    formatter_class=argparse.RawDescriptionHelpFormatter,
    epilog=__doc__.split("\n\n", 1)[1])
  parser.add_argument("--bind", default="::",
                      help="IPv4 or IPv6 literal to listen on (default ::)")
  parser.add_argument("--port", type=int, required=True)
  parser.add_argument("--socket", required=True,
                      help="the backend's FastCGI Unix socket")
  parser.add_argument("--state-dir", required=True,
                      help="lighttpd's pid file, error log and uploads")
  parser.add_argument("--cert", help="server certificate (PEM); no TLS"
                      " without it")
  parser.add_argument("--key", help="its key (default: the --cert file)")
  parser.add_argument("--chain", help="certificate chain file")
  parser.add_argument("--verify-peer", action="store_true",
                      help="require client certificates signed by --cert")
  parser.add_argument("--max-request-body", type=int, default=10 << 20,
                      help="bytes; 0 for no limit (default 10 MiB)")
  parser.add_argument("--user", help="user lighttpd switches to")
  parser.add_argument("--group", help="group lighttpd switches to")
  parser.add_argument("--sendfile-dir", action="append", default=[],
                      dest="sendfile_dirs", metavar="DIR",
                      help="a directory whose files the daemon may have"
                      " lighttpd send (X-Sendfile); repeatable")
  parser.add_argument("--write-idle-timeout", type=int,
                      default=lighttpd_config.DEFAULT_WRITE_IDLE_TIMEOUT,
                      help="seconds a started response may pause, e.g."
                      " between two RPC feedback messages (default"
                      " %(default)s)")
  parser.add_argument("--max-procs", type=int, default=1,
                      help="daemon processes lighttpd spawns")
  parser.add_argument("command", nargs="*",
                      help="the daemon lighttpd spawns (after --)")
  return parser


def main(argv=None):
  """Write the configuration to standard output."""
  args = _Parser().parse_args(argv)
  try:
    settings = lighttpd_config.FrontendSettings(
      bind_address=args.bind, port=args.port, fastcgi_socket=args.socket,
      state_dir=args.state_dir, ssl_cert_path=args.cert,
      ssl_key_path=args.key or args.cert, ssl_chain_path=args.chain,
      ssl_verify_peer=args.verify_peer,
      max_request_body=args.max_request_body, username=args.user,
      groupname=args.group, write_idle_timeout=args.write_idle_timeout,
      sendfile_dirs=tuple(os.path.realpath(path)
                          for path in args.sendfile_dirs))
    if args.command:
      text = lighttpd_config.render_system_config(settings, args.command,
                                                  max_procs=args.max_procs)
    else:
      text = lighttpd_config.render(settings)
  except ValueError as err:
    sys.exit("Cannot render the configuration: %s" % err)
  sys.stdout.write(text)


if __name__ == "__main__":
  main()
