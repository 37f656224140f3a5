"""One lighttpd process: started behind a gate, handed the listening
socket, tied to the daemon by a lifeline; and whether it answers.

Socket activation: lighttpd reads an inherited listening socket from fd 3
when C{LISTEN_FDS=1} and C{LISTEN_PID} is its own pid.  A small C{sh}
wrapper moves the socket, passed as standard input, to fd 3, sets
C{LISTEN_PID=$$} and execs lighttpd, so the pid matches.  The daemon keeps
its own copy of the socket: while lighttpd restarts, clients queue in the
listen backlog instead of being refused.

Orphans: lighttpd runs in its own session, so terminal signals meant for the
daemon do not reach it.  If the daemon dies without calling C{stop()}, a
lifeline process ends lighttpd: a C{sh} reading a pipe whose only writer is
the daemon, which gets end-of-file when the daemon is gone and then sends
lighttpd SIGTERM.  (C{PR_SET_PDEATHSIG} does not work here: the kernel
clears it when lighttpd drops privileges.)  Children the daemon forks
without exec inherit the pipe's write end and so keep lighttpd alive while
they run.
"""

import os
import socket
import subprocess

from ganeti.http.backends import selection

#: Waits for a line from the gate, exiting at end-of-file instead; see
#: L{Spawn}.  The gate comes in as standard output
#: (lighttpd's own then goes to /dev/null): C{sh} redirects descriptors 0-9
#: only, and standard input may carry the listening socket.
_GATE = 'read -r _go <&1 || exit 1; exec >/dev/null; '

#: Moves the listening socket from stdin to fd 3 and execs lighttpd with
#: C{LISTEN_PID} set to its own pid ($$ survives exec).
_ACTIVATION_WRAPPER = ('exec 3<&0 </dev/null; LISTEN_PID=$$ LISTEN_FDS=1'
                       ' exec "$@"')

#: Reads its stdin until end-of-file, then ends the process given as $1.
_LIFELINE_SCRIPT = 'read -r _ignored; kill -TERM "$1" 2>/dev/null'

_SOCKET_ACTIVATION_ENV = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

_PROBE_TIMEOUT = 0.2


def Spawn(command, listen_socket, stderr, access_log=None):
  """Start C{command} (lighttpd's, in the foreground) and its lifeline;
  return C{(process, lifeline)}.

  @param listen_socket: the listening socket lighttpd takes over (socket
      activation), or None
  @param stderr: a file for lighttpd's standard error
  @param access_log: a descriptor lighttpd inherits (at the same number)
      and writes its access log to (L{ChildEnvironment}), or None

  The lifeline needs lighttpd's pid, so lighttpd's process comes first,
  but it waits in a C{sh} for a line on a pipe (the gate) before it execs
  lighttpd, and gets that line once the lifeline runs.  Should this
  process die in between, the gate reaches end-of-file and lighttpd never
  starts: there is no moment with a lighttpd and no lifeline.
  """
  if listen_socket is None:
    (script, stdin) = (_GATE + 'exec "$@"', subprocess.DEVNULL)
  else:
    (script, stdin) = (_GATE + _ACTIVATION_WRAPPER, listen_socket.fileno())
  (gate, opener) = os.pipe()
  try:
    try:
      process = subprocess.Popen(["/bin/sh", "-c", script, "lighttpd"] +
                                 command, stdin=stdin, stdout=gate,
                                 stderr=stderr,
                                 env=ChildEnvironment(access_log),
                                 pass_fds=() if access_log is None
                                 else (access_log, ),
                                 start_new_session=True)
    finally:
      os.close(gate)
    lifeline = None
    try:
      lifeline = Lifeline(process.pid)
      os.write(opener, b"go\n")
    except BaseException:
      process.kill()
      process.wait()
      if lifeline is not None:
        lifeline.Cut()
      raise
  finally:
    os.close(opener)
  return (process, lifeline)


def ProbeAddress(sockaddr):
  """Return where to connect to reach a server listening on C{sockaddr}."""
  (host, port) = sockaddr[:2]
  if host in ("", "0.0.0.0"):
    host = "127.0.0.1"
  elif host == "::":
    host = "::1"
  return (host, port)


def Answers(address):
  """Whether someone accepts and serves connections on C{address}.

  A successful connect is not enough: with socket activation the daemon's
  own listening socket completes connections into its backlog whether or
  not lighttpd runs.  So the probe half-closes its connection and waits
  for the server's side: lighttpd closes (plain HTTP) or sends a TLS alert,
  without logging anything, once it has accepted the connection.
  """
  try:
    probe = socket.create_connection(address, timeout=_PROBE_TIMEOUT)
  except OSError:
    return False
  try:
    probe.shutdown(socket.SHUT_WR)
    probe.recv(1)
    return True
  except ConnectionResetError:
    return True
  except OSError:
    return False
  finally:
    probe.close()


class Lifeline(object):
  """Ends a lighttpd process when this process dies without stopping it."""

  def __init__(self, pid):
    self._process = subprocess.Popen(
      ["/bin/sh", "-c", _LIFELINE_SCRIPT, "ganeti-lighttpd-lifeline",
       str(pid)],
      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
      stderr=subprocess.DEVNULL, start_new_session=True)

  @property
  def pid(self):
    """The lifeline's pid."""
    return self._process.pid

  def Cut(self):
    """Stop watching: kill the lifeline (it then sends nothing) and reap it."""
    self._process.kill()
    self._process.wait()
    self._process.stdin.close()


def ChildEnvironment(access_log=None):
  """lighttpd's environment: this process's without its own
  socket-activation variables, with L{selection.ENV_ACCESS_LOG} naming
  descriptor C{access_log} (the configuration may use it; C{/dev/null}
  without one, e.g. for C{lighttpd -tt}, which opens no log)."""
  environment = dict((key, value) for (key, value) in os.environ.items()
                     if key not in _SOCKET_ACTIVATION_ENV)
  environment[selection.ENV_ACCESS_LOG] = (
    os.devnull if access_log is None else "/proc/self/fd/%d" % access_log)
  return environment
