"""A daemon started the way Ganeti 3.0's C{GenericMain} starts one.

  python3 -m tests.new.daemonized STATE_DIR [PORT [DAEMON]]

The starting process makes a pipe and forks; the daemon (the child) starts
a new session, points 0-2 at /dev/null, makes and starts an C{HttpServer}
with 3.0's signature (Ganeti's C{prepare_fn}), then closes the pipe's write end; the starting
process waits for end-of-file on the read end, at most C{WAIT} seconds,
and exits 0 on end-of-file, 1 otherwise (C{daemon-util start} waiting for
C{utils.Daemonize}).  The daemon writes C{{"pid": ..., "port": ...}} to
STATE_DIR/daemon.json, logs to STATE_DIR/daemon.log, and on SIGTERM stops
the server (Ganeti's main loop ends, then the daemon calls C{Stop()}) and
exits.  The backend is what the environment selects; the daemon's name is
DAEMON (default C{test}: none of Ganeti's).

Handler: C{/slow} writes its pid to STATE_DIR/entered, then answers once
the file STATE_DIR/release exists (at most after 60 s); anything else
answers at once.  The answer is the answering pid, as JSON; for a request
with a body, C{[pid, body]}.
"""

import json
import logging
import os
import select
import signal
import sys
import threading
import time

WAIT = 20.0


class _SlowHandler(object):
  """Made in the daemon, after the import of Ganeti's http.server."""

  def __init__(self, base, state_dir):
    release = os.path.join(state_dir, "release")
    entered = os.path.join(state_dir, "entered")

    class Handler(base):
      def HandleRequest(self, req):  # pylint: disable=no-self-argument
        if req.request_path == "/slow":
          with open(entered + ".part", "w") as marker:
            marker.write("%d" % os.getpid())
          os.rename(entered + ".part", entered)
          deadline = time.monotonic() + 60
          while not os.path.exists(release) and time.monotonic() < deadline:
            time.sleep(0.05)
        if req.request_body:
          return json.dumps([os.getpid(), req.request_body.decode()])
        return json.dumps(os.getpid())
    self.handler = Handler()


def _Daemon(state_dir, port, daemon_name, wpipe):
  os.setsid()
  null = os.open(os.devnull, os.O_RDWR)
  for descriptor in (0, 1, 2):
    os.dup2(null, descriptor)
  os.close(null)
  logging.basicConfig(filename=os.path.join(state_dir, "daemon.log"),
                      level=logging.DEBUG,
                      format="%(asctime)s pid=%(process)d %(message)s")
  stop = threading.Event()
  signal.signal(signal.SIGTERM, lambda *_: stop.set())
  from ganeti.http import server as http_server
  handler = _SlowHandler(http_server.HttpServerHandler, state_dir).handler
  # As Ganeti 3.0's daemons call it: main loop, address, port,
  # max_clients, handler.
  server = http_server.HttpServer(object(), "127.0.0.1", port, 20, handler,
                                  daemon_name=daemon_name)
  server.Start()
  with open(os.path.join(state_dir, "daemon.json"), "w") as info:
    json.dump({"pid": os.getpid(), "port": server.server_address[1]}, info)
  os.close(wpipe)
  while not stop.wait(0.05):
    pass
  logging.info("SIGTERM: stopping")
  server.Stop()
  logging.info("stopped")


def main():
  state_dir = sys.argv[1]
  port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
  daemon_name = sys.argv[3] if len(sys.argv) > 3 else "test"
  (rpipe, wpipe) = os.pipe()
  if os.fork() == 0:
    os.close(rpipe)
    status = 1
    try:
      _Daemon(state_dir, port, daemon_name, wpipe)
      status = 0
    except BaseException:  # pylint: disable=broad-except
      logging.exception("daemon failed")
    finally:
      os._exit(status)  # pylint: disable=protected-access
  os.close(wpipe)
  deadline = time.monotonic() + WAIT
  while time.monotonic() < deadline:
    if select.select([rpipe], [], [], 0.1)[0] and not os.read(rpipe, 1):
      print("daemon started")
      return 0
  print("the daemonization pipe is still open after %s s" % WAIT)
  return 1


if __name__ == "__main__":
  sys.exit(main())
