"""The status file a running server publishes for C{ganeti-http status}.

One JSON file per daemon, C{ganeti-http-<daemon>.json} in Ganeti's run
directory (L{StatusDirectory}; under C{$GANETI_ROOTDIR} when that is set,
L{ganeti_paths}), next to Ganeti's own pid files: the daemon
writes it once serving (atomically, mode 0644 whatever the umask: Ganeti's
daemons run with umask 077) and removes it on stop.  It is written only
where that directory exists: elsewhere (tests, a tree without Ganeti) there
is no daemon to report on.

A file a daemon left behind (killed, power loss before C{/run} was wiped)
is recognised as stale by its pid and start time (L{IsCurrent}), never by
the pid alone.  Fields:

  - C{daemon}, C{backend}, C{source} (where the flag was found);
  - C{pid}, C{start_time} (clock ticks since boot, L{process_identity});
  - C{address}: C{[host, port]} the server listens on; C{tls};
  - C{shim_version}, C{ganeti_version};
  - C{processes}: C{{"lighttpd": [...], "workers": [...]}}, each a list of
    C{{"pid", "start_time"}} at the time of writing (fastcgi only);
  - C{state_dir}: the fastcgi server's private directory, or null.
"""

import json
import logging
import os
import tempfile

import ganeti.http as ganeti_http
from ganeti.http.backends import ganeti_paths
from ganeti.http.backends import selection
from ganeti.http.system import process_identity

_PREFIX = "ganeti-http-"
_SUFFIX = ".json"
_MODE = 0o644


def StatusDirectory(environ=os.environ):
  """The directory of the status files (L{selection.ENV_STATUS_DIR}, else
  Ganeti's run directory, L{ganeti_paths.RunDir})."""
  return selection.Variable(selection.ENV_STATUS_DIR, environ)[0] or \
    ganeti_paths.RunDir(environ)


def StatusPath(daemon_name, environ=os.environ):
  """The status file of C{daemon_name}."""
  return os.path.join(StatusDirectory(environ),
                      _PREFIX + daemon_name + _SUFFIX)


def Identity(pid):
  """C{{"pid", "start_time"}} of the running process C{pid}."""
  return {"pid": pid,
          "start_time": process_identity.ParentAndStartTime(pid)[1]}


def Publish(daemon_name, backend, source, address, tls, processes=None,
            state_dir=None):
  """Write this process's status file; return its path, or None when it
  could not be written (logged: a daemon serves without one).

  @param processes: C{{"lighttpd": [pid...], "workers": [pid...]}}
  """
  path = StatusPath(daemon_name)
  directory = os.path.dirname(path)
  if not os.path.isdir(directory):
    logging.debug("No status file: %s does not exist", directory)
    return None
  try:
    status = dict(Identity(os.getpid()),
                  daemon=daemon_name, backend=backend, source=source,
                  address=list(address[:2]), tls=bool(tls),
                  shim_version=ganeti_http.SHIM_VERSION,
                  ganeti_version=ganeti_http.HTTP_GANETI_VERSION,
                  processes={kind: [Identity(pid) for pid in sorted(pids)]
                             for (kind, pids) in (processes or {}).items()},
                  state_dir=state_dir)
    (handle, temporary) = tempfile.mkstemp(prefix=".", suffix=_SUFFIX,
                                           dir=directory)
    try:
      with os.fdopen(handle, "w") as stream:
        os.fchmod(stream.fileno(), _MODE)
        json.dump(status, stream, indent=1, sort_keys=True)
        stream.write("\n")
      os.replace(temporary, path)
    except BaseException:
      os.unlink(temporary)
      raise
  except (OSError, ValueError) as err:
    logging.warning("Cannot write the HTTP status file %s: %s", path, err)
    return None
  return path


def Withdraw(path):
  """Remove the status file at C{path} if it is still this process's (a
  later daemon of the same name may have replaced it)."""
  if path is None:
    return
  try:
    status = Read(path)
    if status is not None and status.get("pid") == os.getpid():
      os.unlink(path)
  except (OSError, ValueError) as err:
    logging.warning("Cannot remove the HTTP status file %s: %s", path, err)


def Read(path):
  """The status in the file at C{path} as a dict; None if there is none.

  @raise ValueError: the file is not a status file
  """
  try:
    with open(path, "r") as handle:
      status = json.load(handle)
  except FileNotFoundError:
    return None
  if not isinstance(status, dict):
    raise ValueError("%s does not hold a JSON object" % path)
  return status


def IsCurrent(identity):
  """Whether C{identity} (C{{"pid", "start_time"}}) is a running process
  (and not a later one that got the same pid)."""
  try:
    return process_identity.IsRunning(int(identity["pid"]),
                                       int(identity["start_time"]))
  except (KeyError, TypeError, ValueError):
    return False
