"""What each daemon is configured to run, and what it runs now.

The configured backend is resolved as a daemon started now from this
environment would resolve it (L{selection.ResolveBackend}); the running
one is what the daemon published in its status file
(L{status_file}), trusted only while its pid and start time are those of
a running process.
"""

import os

import ganeti.http as ganeti_http
from ganeti.http.backends import daemons
from ganeti.http.backends import selection
from ganeti.http.backends import status_file
from ganeti.http.backends.fastcgi.lighttpd import layout as lighttpd_layout
from ganeti.http.system import process_identity


def _GanetiPid(daemon):
  """The pid in Ganeti's pid file of the daemon if that process runs, else
  None."""
  try:
    with open(daemons.PidFile(daemon)) as handle:
      pid = int(handle.read().strip())
    process_identity.ParentAndStartTime(pid)
  except (OSError, ValueError):
    return None
  return pid


def _LivePids(identities):
  return [entry["pid"] for entry in identities
          if status_file.IsCurrent(entry)]


def _CurrentLighttpd(published):
  """lighttpd's pid as lighttpd itself wrote it into the server's state
  directory (it changes when the server restarts lighttpd), else the
  published one if still running."""
  state_dir = published.get("state_dir")
  if state_dir:
    try:
      with open(lighttpd_layout.StateLayout(state_dir).pid_file) as handle:
        pid = int(handle.read().strip())
      process_identity.ParentAndStartTime(pid)
      return [pid]
    except (OSError, ValueError):
      pass
  return _LivePids(published.get("processes", {}).get("lighttpd", []))


def _Running(daemon, problems):
  """The running part of the daemon's status (see L{Collect})."""
  path = status_file.StatusPath(daemon.name)
  try:
    published = status_file.Read(path)
  except (OSError, ValueError) as err:
    problems.append("cannot read %s: %s" % (path, err))
    published = None
  ganeti_pid = _GanetiPid(daemon)
  if published is None or not status_file.IsCurrent(published):
    if published is not None:
      problems.append("%s is stale: its process (pid %s) is gone" %
                      (path, published.get("pid")))
    return {"running": ganeti_pid is not None, "pid": ganeti_pid,
            "backend": None, "source": None, "address": None,
            "lighttpd_pids": [], "worker_pids": [], "shim_version": None,
            "status_file": None}
  processes = published.get("processes", {})
  return {"running": True, "pid": published["pid"],
          "backend": published.get("backend"),
          "source": published.get("source"),
          "address": published.get("address"),
          "tls": published.get("tls"),
          "lighttpd_pids": _CurrentLighttpd(published),
          "worker_pids": _LivePids(processes.get("workers", [])),
          "shim_version": published.get("shim_version"),
          "status_file": path}


def _Configured(daemon, environ):
  try:
    (backend, source) = selection.ResolveBackend(daemon.name, environ)
    return {"backend": backend, "source": source, "error": None}
  except selection.BackendFlagError as err:
    return {"backend": None, "source": None, "error": str(err)}


def Collect(daemon, environ=os.environ):
  """The status of C{daemon} (an L{daemons.HttpDaemon}) as a dict:
  C{configured} (C{backend}, C{source}, C{error}), C{running} (whether
  it runs, its C{pid}, the running C{backend}, the C{source} it was chosen
  from, C{address}, C{lighttpd_pids}, C{worker_pids}, C{shim_version}),
  C{restart_needed} (why a restart would change what runs) and
  C{problems}, both lists of sentences.
  """
  problems = []
  configured = _Configured(daemon, environ)
  running = _Running(daemon, problems)
  if configured["error"]:
    problems.append(configured["error"])
  restart_needed = []
  if running["backend"] and configured["backend"] and \
      running["backend"] != configured["backend"]:
    restart_needed.append("it runs %s but is configured for %s" %
                          (running["backend"], configured["backend"]))
  if running["shim_version"] and \
      running["shim_version"] != ganeti_http.SHIM_VERSION:
    restart_needed.append("it runs ganeti-http-shim %s, %s is installed" %
                          (running["shim_version"], ganeti_http.SHIM_VERSION))
  if running["running"] and running["backend"] is None:
    problems.append("%s runs (pid %s) but published no status: a shim"
                    " older than this one, or Ganeti's own HTTP server" %
                    (daemon.program, running["pid"]))
  return {"daemon": daemon.name, "program": daemon.program,
          "configured": configured, "running": running,
          "restart_needed": restart_needed, "problems": problems}


def ShellVariables(environ=os.environ):
  """The C{GANETI_HTTP_*} variables set in C{environ}: a daemon started
  from this environment gets them."""
  return sorted(name for name in environ
                if name.startswith("GANETI_HTTP_") and environ[name])
