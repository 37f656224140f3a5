"""How much a fastcgi server serves while its frontend account kills lighttpd.

  .venv/bin/python bench/kill_loop.py [--seconds 30] [--interval 0.01]
      [--request-every 1] [--timeout 5]

Run as root (issue 14 §2).  A fastcgi server runs in this process, as
root, with C{nobody} as lighttpd's account; a process of C{nobody} (as any
other web application of a shared account such as C{www-data} could)
SIGKILLs that lighttpd every C{--interval} seconds, while this process
sends a request every C{--request-every} seconds, each allowed
C{--timeout} seconds.  It prints how many succeeded.  The killer only
kills the lighttpd of this bench (its command line names the bench's
runtime directory).  Loopback only.  A measurement, not a test: the figure
depends on the machine and its load.
"""

import argparse
import http.client
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
  __file__))))

# pylint: disable=wrong-import-position
from ganeti.http import server as http_server

#: Kills, as nobody, every lighttpd of nobody whose command line contains
#: argv[1], every argv[2] seconds, for argv[3] seconds; prints the count.
_KILLER = """
import os, signal, sys, time
(mark, interval, end) = (sys.argv[1], float(sys.argv[2]),
                         time.monotonic() + float(sys.argv[3]))
kills = 0
while time.monotonic() < end:
  for pid in os.listdir("/proc"):
    try:
      with open("/proc/%s/cmdline" % pid, "rb") as handle:
        command = handle.read()
      if command.startswith(b"lighttpd") or b"/lighttpd\\0" in command:
        mine = os.stat("/proc/" + pid).st_uid == os.getuid()
        if mine and mark.encode() in command:
          os.kill(int(pid), signal.SIGKILL)
          kills += 1
    except (OSError, ValueError):
      pass
  time.sleep(interval)
print(kills)
"""


class _Handler(http_server.HttpServerHandler):

  def HandleRequest(self, req):
    return "ok"


def _BecomeNobody():
  nobody = pwd.getpwnam("nobody")
  os.setgroups([])
  os.setgid(nobody.pw_gid)
  os.setuid(nobody.pw_uid)


def _Request(port, timeout):
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
  try:
    connection.request("GET", "/")
    return connection.getresponse().status == 200
  except OSError:
    return False
  finally:
    connection.close()


def Measure(seconds, interval, request_every, timeout):
  """Run the kill loop; return C{(succeeded, sent, kills)}."""
  workspace = tempfile.mkdtemp(prefix="ganeti-http-kill-loop-")
  os.chmod(workspace, 0o755)
  runtime_dir = os.path.join(workspace, "run")
  config = os.path.join(workspace, "http-backend.conf")
  with open(config, "w") as handle:
    handle.write("[fastcgi]\nruntime-dir = %s\nfrontend-user = nobody\n" %
                 runtime_dir)
  os.environ["GANETI_HTTP_BACKEND"] = "fastcgi"
  os.environ["GANETI_HTTP_BACKEND_CONFIG"] = config
  server = http_server.HttpServer("127.0.0.1", 0, _Handler(),
                                  daemon_name="kill-loop")
  server.Start()
  killer = None
  try:
    port = server.server_address[1]
    assert _Request(port, timeout), "the server does not serve"
    killer = subprocess.Popen(
      ["/usr/bin/python3", "-c", _KILLER, runtime_dir, str(interval),
       str(seconds)], cwd="/", preexec_fn=_BecomeNobody,
      stdout=subprocess.PIPE, text=True)
    (succeeded, sent) = (0, 0)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
      started = time.monotonic()
      sent += 1
      succeeded += _Request(port, timeout)
      time.sleep(max(0, request_every - (time.monotonic() - started)))
    kills = int(killer.communicate()[0])
  finally:
    if killer is not None and killer.poll() is None:
      killer.kill()
      killer.wait()
    server.Stop()
    shutil.rmtree(workspace, ignore_errors=True)
  return (succeeded, sent, kills)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--seconds", type=float, default=30)
  parser.add_argument("--interval", type=float, default=0.01,
                      help="seconds between kill sweeps")
  parser.add_argument("--request-every", type=float, default=1.0)
  parser.add_argument("--timeout", type=float, default=5.0)
  options = parser.parse_args()
  if os.geteuid() != 0:
    parser.error("run as root: lighttpd must run as another account")
  (succeeded, sent, kills) = Measure(options.seconds, options.interval,
                                     options.request_every, options.timeout)
  print("%d of %d requests succeeded (%.0f %%) in %g s; lighttpd killed %d"
        " times (a sweep every %g s, a request every %g s, timeout %g s)" %
        (succeeded, sent, 100.0 * succeeded / sent, options.seconds, kills,
         options.interval, options.request_every, options.timeout))


if __name__ == "__main__":
  main()
