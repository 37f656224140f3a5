"""Continuous load on a test-bed cluster, run inside a node (stdlib only).

Copied into a node and run there with the node's python3; one mode per
process; each writes one JSON object per line to standard output for every
thing it did (the test reads them and sums them up per migration step) and
stops at SIGTERM after the operation in progress.  A failed operation's
line says exactly what failed: the whole command or request, and the
error text (C{detail}).

- C{jobs}: a loop of Ganeti jobs and queries with Ganeti's own commands:
  instance shutdown then startup (in turn over the instances given),
  C{gnt-debug delay} RPCs on every node, C{gnt-node list} (live data from
  every noded).  One line per command: its exit status decides C{ok}.
- C{rapi}: a RAPI client with basic authentication, a new HTTPS connection
  per request: reads (C{/2/info}, C{/2/nodes?bulk=1}, C{/2/jobs}) and, every
  few requests, a job (a cluster tag added, then removed) polled through
  C{/2/jobs/ID} until it ends.
- C{probe}: TCP connects to each C{HOST:PORT} every 0.1 s; one line per
  stretch of time a target refused (or did not answer) connections.
- C{answers}: requests to a node daemon (C{HOST:PORT}), one after
  another, each on a new TLS connection with the node's client
  certificate (as Ganeti's RPC client presents it): one line per
  request, C{kind} C{answer} (with the time it took) or C{refused}, or a
  failure.
- C{rpc}: Ganeti's own RPC client on the master (the C{version} call of
  Ganeti 3.0's BootstrapRunner, through whatever C{ganeti.http} is
  installed) to each node in turn; one line per call with its latency.
"""

import argparse
import base64
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import time

GANETI_PYTHON_PATH = "/usr/share/ganeti/default"

_stopping = []


def _Stop(signum, frame):  # pylint: disable=unused-argument
  _stopping.append(signum)


def Emit(**event):
  event.setdefault("t", time.time())
  sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
  sys.stdout.flush()


def _Pause(seconds):
  deadline = time.monotonic() + seconds
  while not _stopping and time.monotonic() < deadline:
    time.sleep(min(0.1, seconds))


def _Tail(text, limit=1000):
  return " | ".join(text.strip().splitlines())[-limit:]


# jobs

def _JobCommands(instances, nodes, delay):
  """The commands of one round of the job loop: (kind, op, command)."""
  on_nodes = " ".join("-n %s" % node for node in nodes)
  commands = []
  for instance in instances:
    commands += [
      ("job", "instance shutdown",
       "gnt-instance shutdown --timeout=0 %s" % instance),
      ("job", "instance startup", "gnt-instance startup %s" % instance),
      ("job", "debug delay (all nodes)",
       "gnt-debug delay --no-master %s %s" % (on_nodes, delay)),
      ("query", "node list",
       "gnt-node list --no-headers -o name,mfree,dfree,pinst_cnt"),
    ]
  return commands


def RunJobs(args):
  while not _stopping:
    for (kind, op, command) in _JobCommands(args.instances, args.nodes,
                                            args.delay):
      if _stopping:
        break
      started = time.time()
      result = subprocess.run(command, shell=True, stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT,
                              universal_newlines=True, check=False)
      ok = result.returncode == 0
      Emit(t=started, dt=time.time() - started, kind=kind, op=op, ok=ok,
           request=command,
           detail="" if ok else "exit %d: %s" % (result.returncode,
                                                 _Tail(result.stdout)))
      _Pause(args.pause)


# rapi

class RapiClient(object):
  """Basic-authenticated RAPI requests, one connection each."""

  def __init__(self, host, port, user, password):
    self.host = host
    self.port = port
    self.context = ssl._create_unverified_context()  # pylint: disable=W0212
    token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    self.headers = {"Authorization": "Basic " + token,
                    "Content-Type": "application/json"}

  def Request(self, method, path, body=None):
    """One request; emits its line; returns the decoded answer or None.

    A failed request's line names the stage it failed in: C{connect}
    (TCP and TLS), C{send} (the request), C{receive} (the answer) or
    C{answer} (an answer other than 200, or not JSON).
    """
    started = time.time()
    answer = None
    stage = "connect"
    try:
      connection = http.client.HTTPSConnection(self.host, self.port,
                                               context=self.context,
                                               timeout=60)
      try:
        connection.connect()
        stage = "send"
        connection.request(method, path, body=None if body is None
                           else json.dumps(body), headers=self.headers)
        stage = "receive"
        response = connection.getresponse()
        data = response.read()
      finally:
        connection.close()
      stage = "answer"
      ok = response.status == 200
      detail = "" if ok else "%d %s" % (response.status, _Tail(
        data.decode(errors="replace")))
      if ok:
        answer = json.loads(data.decode())
    except (OSError, http.client.HTTPException, ValueError) as err:
      (ok, detail) = (False, "%s: %s" % (err.__class__.__name__, err))
    Emit(t=started, dt=time.time() - started, kind="rapi",
         op="%s %s" % (method, path.split("?")[0]), ok=ok,
         request="%s %s" % (method, path), detail=detail,
         stage=None if ok else stage)
    return answer


def RunRapi(args):
  client = RapiClient(args.host, args.port, args.user, args.password)
  reads = ("/2/info", "/2/nodes?bulk=1", "/2/jobs")
  count = 0
  while not _stopping:
    client.Request("GET", reads[count % len(reads)])
    count += 1
    if count % args.job_every == 0:
      tag = "load%d" % count
      for method in ("PUT", "DELETE"):
        job = client.Request(method, "/2/tags?tag=%s" % tag)
        if job is not None:
          _WaitRapiJob(client, job)
    _Pause(args.pause)


def _WaitRapiJob(client, job_id):
  """Poll a RAPI job until it ends (or the poll fails); emit its end."""
  submitted = time.time()
  while True:
    job = client.Request("GET", "/2/jobs/%s" % job_id)
    if job is None:
      return
    if job["status"] in ("success", "error", "canceled"):
      Emit(t=submitted, dt=time.time() - submitted, kind="rapi_job",
           op="tag job", request="job %s" % job_id,
           ok=job["status"] == "success",
           detail="" if job["status"] == "success" else _Tail(
             json.dumps(job.get("opresult"))))
      return
    time.sleep(0.5)


# probe

def RunProbe(args):
  targets = []
  for target in args.targets:
    (host, port) = target.rsplit(":", 1)
    targets.append((target, host, int(port)))
  down_since = {}
  while not _stopping:
    for (name, host, port) in targets:
      now = time.time()
      try:
        socket.create_connection((host, port), timeout=2).close()
        up = True
      except OSError:
        up = False
      if not up:
        down_since.setdefault(name, now)
      elif name in down_since:
        start = down_since.pop(name)
        Emit(t=start, dt=now - start, kind="refused", op=name, ok=False)
    time.sleep(0.1)
  for (name, start) in down_since.items():
    Emit(t=start, dt=time.time() - start, kind="refused", op=name, ok=False)


# answers

#: The node's client certificate, which Ganeti 3.0's RPC client presents
#: (signed by the cluster's certificate; noded accepts the nodes' ones).
NODE_CLIENT_CERTIFICATE = "/var/lib/ganeti/client.pem"


def RunAnswers(args):
  (host, port) = args.target.rsplit(":", 1)
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  context.check_hostname = False
  context.verify_mode = ssl.CERT_NONE
  context.load_cert_chain(NODE_CLIENT_CERTIFICATE)
  while not _stopping:
    started = time.time()
    connection = http.client.HTTPSConnection(host, int(port), timeout=60,
                                             context=context)
    try:
      connection.request("POST", "/version", body="[]")
      response = connection.getresponse()
      response.read()
      Emit(t=started, dt=time.time() - started, kind="answer", op=args.target,
           ok=response.status == 200, detail=str(response.status))
    except ConnectionRefusedError:
      Emit(t=started, dt=time.time() - started, kind="refused",
           op=args.target, ok=False)
      time.sleep(0.01)
    except (OSError, http.client.HTTPException) as err:
      Emit(t=started, dt=time.time() - started, kind="answer", op=args.target,
           ok=False, detail=repr(err))
    finally:
      connection.close()


# rpc

def RunRpc(args):
  sys.path.insert(0, GANETI_PYTHON_PATH)
  from ganeti.rpc import node as rpc  # pylint: disable=import-error
  rpc.Init()
  try:
    runner = rpc.BootstrapRunner()
    while not _stopping:
      for node in args.nodes:
        started = time.time()
        result = runner.call_version([node])[node]
        Emit(t=started, dt=time.time() - started, kind="rpc", op=node,
             request="version call to %s" % node,
             ok=not result.fail_msg, detail=result.fail_msg or "")
      _Pause(args.pause)
  finally:
    rpc.Shutdown()


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  modes = parser.add_subparsers(dest="mode", required=True)
  jobs = modes.add_parser("jobs")
  jobs.add_argument("--instance", dest="instances", action="append",
                    required=True)
  jobs.add_argument("--node", dest="nodes", action="append", required=True)
  jobs.add_argument("--delay", default="1", help="seconds of the delay RPC")
  jobs.add_argument("--pause", type=float, default=1.0)
  rapi = modes.add_parser("rapi")
  rapi.add_argument("--host", required=True)
  rapi.add_argument("--port", type=int, default=5080)
  rapi.add_argument("--user", required=True)
  rapi.add_argument("--password", required=True)
  rapi.add_argument("--job-every", type=int, default=5)
  rapi.add_argument("--pause", type=float, default=0.5)
  probe = modes.add_parser("probe")
  probe.add_argument("targets", nargs="+", metavar="HOST:PORT")
  answers = modes.add_parser("answers")
  answers.add_argument("target", metavar="HOST:PORT")
  rpc_mode = modes.add_parser("rpc")
  rpc_mode.add_argument("--node", dest="nodes", action="append",
                        required=True)
  rpc_mode.add_argument("--pause", type=float, default=0.5)
  args = parser.parse_args()
  signal.signal(signal.SIGTERM, _Stop)
  signal.signal(signal.SIGINT, _Stop)
  {"jobs": RunJobs, "rapi": RunRapi, "probe": RunProbe,
   "answers": RunAnswers, "rpc": RunRpc}[args.mode](args)


if __name__ == "__main__":
  main()
