"""The drainer: a process that attends a lighttpd released at the daemon's
stop until that lighttpd has exited.

A stop of a daemon whose requests run in other processes (Ganeti 3.0/3.1's
signature, or workers) returns at once, as Ganeti 3.0's does: lighttpd
gets its graceful stop (it accepts no new connection and finishes those
it has, however long that takes) and is left to finish on its own
(L{LighttpdSupervisor.Release<ganeti.http.backends.fastcgi.lighttpd.
supervisor.LighttpdSupervisor.Release>}).  Such a lighttpd still needs,
after the daemon exited:

  - the FastCGI backend: a request whose body is still arriving at the
    stop reaches the backend only once lighttpd has all of it;
  - the readers of its error log (L{error_log}) and access log
    (L{access_log}): their pipes end with lighttpd, and a line written
    after the daemon's exit must still reach C{lighttpd-<daemon>.log} and
    the daemon's request log;
  - its state directory, with the FastCGI socket it connects to by path,
    kept until it has exited and removed then.

L{Start} forks the drainer from the daemon for that: a copy of the daemon,
with its handler and its logs.  It accepts the FastCGI connections the
released lighttpd still opens and serves each in a child of its own, as
Ganeti 3.0's server served each connection
(L{ConnectionChildren<ganeti.http.system.connection_children.
ConnectionChildren>}), letting in that lighttpd only: it pins the very
process (L{process_identity.Process}), as the daemon's own check (which
wants lighttpd to be the daemon's child) cannot once the daemon has
exited.  With several backend processes the same holds: the daemon's
workers stop accepting at the stop and finish what they serve; the
drainer serves what comes after.  It resumes the readers the daemon
paused, so no line is lost or cut in two (L{line_reader}), and owns the
state directory (its C{owner} file names the drainer: the next daemon's
start leaves it alone).  Once lighttpd has exited, the drainer waits for
the last lines, removes the directory and exits; children still serving
finish on their own.  There is one drainer per released lighttpd, named
C{<daemon>-drain} in C{ps}; it ends with its lighttpd, not at SIGTERM
(the requests in flight must not be lost; ending lighttpd ends it).
"""

import logging
import os
import threading

from ganeti.http.backends.fastcgi import peer_check
from ganeti.http.system import forked_child
from ganeti.http.system import process_identity

#: Seconds the drainer waits, after lighttpd's exit, for the end of its
#: logs (which ends with lighttpd unless a process it started kept a copy).
_LAST_LINES_WAIT = 5.0


def Start(lighttpd, state_dir, daemon_name, make_listener, keep=()):
  """Fork the drainer of a released lighttpd (see the module's description);
  return its pid.  In the daemon, after the fork, the state directory is
  handed over to the drainer and the daemon's copies of lighttpd's pipes
  are closed.  If lighttpd has exited (and was reaped) meanwhile, there is
  no drainer: its last lines are read here, the directory is removed, and
  the result is None.

  @param lighttpd: the released L{Instance<ganeti.http.backends.fastcgi.
      lighttpd.supervisor.Instance>}, its readers paused
  @param state_dir: lighttpd's L{StateDir<ganeti.http.backends.fastcgi.
      lighttpd.state_dirs.StateDir>}; closed here
  @param daemon_name: the daemon's name; the drainer's process name is
      C{<daemon>-drain} (C{noded-drain}), not the daemon's
  @param make_listener: C{make_listener(check)} returns the
      L{FastCgiListener<ganeti.http.backends.fastcgi.listener.
      FastCgiListener>} that serves lighttpd's connections, letting in
      those C{check} (a L{peer_check.PeerCheck}) allows
  @param keep: the sockets the drainer needs (the FastCGI socket)
  """
  try:
    # Made here, while lighttpd is this process's child: its pid cannot
    # have been reused.
    process = process_identity.Process(lighttpd.process.pid)
  except OSError:  # it has exited since, and was reaped
    for reader in lighttpd.readers:
      reader.Resume()
    lighttpd.JoinReaders()
    state_dir.Remove()
    return None
  pid = forked_child.Fork(
    lambda _stopping: _Drain(lighttpd, process, state_dir, daemon_name,
                             make_listener),
    keep=list(keep) + lighttpd.readers + [state_dir],
    name="Drainer of lighttpd (pid %d)" % process.pid)
  state_dir.HandOver(pid)
  state_dir.Close()
  for reader in lighttpd.readers:
    reader.Close()
  threading.Thread(target=_Reap, args=(pid, ), name="DrainerReaper",
                   daemon=True).start()
  logging.info("lighttpd (pid %d) finishes the requests in flight on its"
               " own, attended by the drainer (pid %d)", process.pid, pid)
  return pid


def _Drain(lighttpd, process, state_dir, daemon_name, make_listener):
  """What the drainer does, in the drainer."""
  # Not the daemon's name (ps -C ganeti-noded); 15 characters at most.
  with open("/proc/self/comm", "w") as comm:
    comm.write(daemon_name[:9] + "-drain")
  for reader in lighttpd.readers:
    reader.Resume()
  listener = make_listener(peer_check.PeerCheck(lambda: process))
  listener.Serve(should_continue=process.Alive)
  lighttpd.JoinReaders(_LAST_LINES_WAIT)
  state_dir.Remove()
  logging.info("lighttpd (pid %d), released at the daemon's stop, has"
               " exited; its state directory %s is removed", process.pid,
               state_dir.path)


def _Reap(pid):
  """Collect the drainer should it exit while this process still runs."""
  try:
    os.waitpid(pid, 0)
  except ChildProcessError:  # reaped by a reaper of the daemon's
    pass
