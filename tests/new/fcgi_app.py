"""A tiny FastCGI application for the lighttpd tests, run as its own process.

  python -m tests.new.fcgi_app SOCKET_PATH
  python -m tests.new.fcgi_app --spawned MARKER_BASE

The first listens on the Unix socket SOCKET_PATH (mode 0777, so lighttpd may
run as another user); the second serves the listening socket lighttpd passes
as standard input when it spawns the application ("bin-path").  With flup,
it answers:

  - C{/env}: the CGI variables lighttpd passed, as JSON;
  - C{/slow?SECONDS}: creates SOCKET_PATH (or MARKER_BASE) + ".slow" when
    it starts, then answers "slow done" after SECONDS;
  - C{/echo}: the length of the request body it read;
  - C{/stream}: three chunks, the second and third only once SOCKET_PATH
    (or MARKER_BASE) + ".go" exists (at most 30 s later);
  - C{/pid}: the application's pid;
  - anything else: "hello".

SIGTERM ends it.
"""

import json
import os
import sys
import time

from flup.server.fcgi import WSGIServer


def _Application(marker_base):
  def _App(environ, start_response):
    path = environ.get("PATH_INFO", "")
    body = [b"hello\n"]
    if path == "/env":
      variables = dict((key, value) for (key, value) in environ.items()
                       if isinstance(value, str))
      body = [json.dumps(variables).encode()]
    elif path == "/slow":
      with open(marker_base + ".slow", "w"):
        pass
      time.sleep(float(environ.get("QUERY_STRING") or "1"))
      body = [b"slow done\n"]
    elif path == "/echo":
      length = len(environ["wsgi.input"].read())
      body = [b"%d\n" % length]
    elif path == "/pid":
      body = [b"%d\n" % os.getpid()]
    elif path == "/stream":
      body = _Stream(marker_base + ".go")
    start_response("200 OK", [("Content-Type", "text/plain")])
    return body
  return _App


def _Stream(go_marker):
  yield b"chunk 0\n"
  deadline = time.monotonic() + 30
  while not os.path.exists(go_marker) and time.monotonic() < deadline:
    time.sleep(0.05)
  yield b"chunk 1\n"
  yield b"chunk 2\n"


def main(argv):
  if argv[0] == "--spawned":
    server = WSGIServer(_Application(argv[1]), multiplexed=False)
  else:
    server = WSGIServer(_Application(argv[0]), bindAddress=argv[0], umask=0,
                        multiplexed=False)
  server.run()


if __name__ == "__main__":
  main(sys.argv[1:])
