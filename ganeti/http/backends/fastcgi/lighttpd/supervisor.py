"""Run lighttpd for a daemon: check, start, keep alive, stop, leave nothing.

L{LighttpdSupervisor} owns one lighttpd process at a time:

  - C{check()} writes the configuration into the state directory and has
    C{lighttpd -tt} validate it;
  - C{start()} spawns C{lighttpd -D} (foreground), handing it the daemon's
    listening socket if there is one, and returns once lighttpd accepts
    connections;
  - a monitor thread restarts lighttpd with exponential back-off if it dies;
  - C{stop()} sends SIGINT (lighttpd's graceful shutdown: stop accepting,
    finish requests in flight; SIGTERM would drop them), SIGKILL after a
    timeout, and reaps everything it started.

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

Privileges: lighttpd started as root reads its certificate and key, opens
its pid file and binds before switching to C{server.username}; it opens its
error log and upload files after.  With C{user}/C{group} given (and this
process root) the state directory is prepared accordingly: see
L{state_dirs.PrepareForLighttpd}.
"""

import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time

from ganeti.http.backends.fastcgi.lighttpd import state_dirs
from ganeti.http.backends.fastcgi.lighttpd.config import StateLayout

DEFAULT_MODULE_DIR = "/usr/lib/lighttpd"

#: Where lighttpd usually lives when C{/usr/sbin} is not on C{PATH}.
_FALLBACK_BINARY = "/usr/sbin/lighttpd"

#: Waits for a line from the gate, exiting at end-of-file instead; see
#: L{LighttpdSupervisor._Spawn}.  The gate comes in as standard output
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

#: Lines of lighttpd's output quoted in errors and log messages, the most
#: read of each file for them, and the longest line quoted whole (bytes).
#: lighttpd's user owns its error log and could make it as large as it
#: likes: only its end is read.
_OUTPUT_LINES = 30
_OUTPUT_READ_LIMIT = 64 * 1024
_OUTPUT_LINE_LIMIT = 1024

_PROBE_TIMEOUT = 0.2
_POLL_INTERVAL = 0.05


class LighttpdError(Exception):
  """lighttpd refused its configuration, failed to start or is missing.

  @ivar output: what lighttpd printed or logged about it
  """

  def __init__(self, message, output=""):
    self.output = output
    if output:
      message = "%s:\n%s" % (message, output)
    Exception.__init__(self, message)


def FindLighttpd():
  """Return the path of the lighttpd binary (C{PATH}, then C{/usr/sbin}).

  @raise LighttpdError: there is none
  """
  binary = shutil.which("lighttpd")
  if binary is None and os.access(_FALLBACK_BINARY, os.X_OK):
    binary = _FALLBACK_BINARY
  if binary is None:
    raise LighttpdError("lighttpd not found on PATH nor as %s" %
                        _FALLBACK_BINARY)
  return binary


def _Tail(text, lines=_OUTPUT_LINES):
  """The last C{lines} lines of C{text}, each cut to a readable length."""
  return "\n".join(
    line if len(line) <= _OUTPUT_LINE_LIMIT
    else line[:_OUTPUT_LINE_LIMIT] + " [...]"
    for line in text.strip().splitlines()[-lines:])


def _ReadFrom(path, offset=0):
  """Return the text of regular file C{path} from C{offset} on, at most its
  last L{_OUTPUT_READ_LIMIT} bytes ("" if unreadable); symbolic links are
  not followed."""
  try:
    descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
      info = os.fstat(handle.fileno())
      if not stat.S_ISREG(info.st_mode):
        return ""
      handle.seek(max(offset, info.st_size - _OUTPUT_READ_LIMIT))
      return handle.read(_OUTPUT_READ_LIMIT).decode("utf-8", "replace")
  except OSError:
    return ""


def _ProbeAddress(sockaddr):
  """Return where to connect to reach a server listening on C{sockaddr}."""
  (host, port) = sockaddr[:2]
  if host in ("", "0.0.0.0"):
    host = "127.0.0.1"
  elif host == "::":
    host = "::1"
  return (host, port)


def _Answers(address):
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


class _Lifeline(object):
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


class _Instance(object):
  """One running lighttpd with its lifeline."""

  def __init__(self, process, lifeline, log_offset):
    self.process = process
    self.lifeline = lifeline
    self.log_offset = log_offset
    self.started = time.monotonic()


class LighttpdSupervisor(object):
  """Runs and watches lighttpd for one daemon.

  @param config_text: the configuration (see L{config})
  @param state_dir: the directory the configuration's state paths are in
      (its C{settings.state_dir}); this class owns it and sets its modes
  @param listen_socket: a bound, listening socket to hand over (the
      configuration must enable socket activation for its address and
      port), or None for lighttpd to bind itself
  @param lighttpd_binary: default: L{FindLighttpd}
  @param module_dir: lighttpd's module directory
  @param user: the configuration's C{server.username}, if any
  @param group: the configuration's C{server.groupname}, if any (default:
      the user's group); both only matter when this process is root, as
      for lighttpd itself
  @param address: C{(host, port)} lighttpd listens on, to see when it
      answers; needed without C{listen_socket}
  @param start_timeout: seconds lighttpd may take to answer
  @param backoff_initial: seconds before the first restart after a crash
  @param backoff_max: longest wait between restarts (the wait doubles
      after each failed or short-lived run)
  @param stable_period: seconds of running after which a crash counts as
      the first again
  """

  def __init__(self, config_text, state_dir, listen_socket=None,
               lighttpd_binary=None, module_dir=None, user=None, group=None,
               address=None, start_timeout=10.0, backoff_initial=0.5,
               backoff_max=10.0, stable_period=30.0):
    if listen_socket is None and address is None:
      raise ValueError("Either listen_socket or address is needed")
    self._config_text = config_text
    self._layout = StateLayout(state_dir)
    self._listen_socket = listen_socket
    self._binary = lighttpd_binary or FindLighttpd()
    if not os.access(self._binary, os.X_OK):
      raise LighttpdError("lighttpd binary %s is not executable" %
                          self._binary)
    self._module_dir = module_dir or DEFAULT_MODULE_DIR
    self._owner = state_dirs.ResolveOwner(user, group)
    if listen_socket is not None:
      address = listen_socket.getsockname()
    self._address = _ProbeAddress(address)
    self._start_timeout = start_timeout
    self._backoff_initial = backoff_initial
    self._backoff_max = backoff_max
    self._stable_period = stable_period
    self._lock = threading.Lock()
    self._stopping = threading.Event()
    self._instance = None
    self._monitor = None

  @property
  def config_path(self):
    """Where the configuration is written."""
    return self._layout.config

  @property
  def _stderr_path(self):
    return os.path.join(self._layout.state_dir, "lighttpd.stderr")

  @property
  def pid(self):
    """The pid of the current lighttpd, or None when there is none."""
    instance = self._instance
    if instance is None:
      return None
    return instance.process.pid

  @property
  def lifeline_pid(self):
    """The pid of the current lighttpd's lifeline, or None."""
    instance = self._instance
    if instance is None:
      return None
    return instance.lifeline.pid

  def __enter__(self):
    self.start()
    return self

  def __exit__(self, *exc_info):
    self.stop()

  def _Command(self):
    return [self._binary, "-f", self._layout.config, "-m", self._module_dir]

  def check(self):
    """Write the configuration and have lighttpd check it (C{-tt}).

    @return: lighttpd's output (warnings), usually empty
    @raise LighttpdError: lighttpd rejects the configuration
    """
    state_dirs.PrepareForLighttpd(self._layout, self._owner,
                                  self._config_text)
    result = subprocess.run(self._Command() + ["-tt"], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env=_ChildEnvironment(), timeout=60, check=False)
    output = result.stdout.decode("utf-8", "replace").strip()
    if result.returncode != 0:
      raise LighttpdError("lighttpd rejected its configuration %s" %
                          self._layout.config, output)
    if output:
      logging.warning("lighttpd warns about %s: %s", self._layout.config,
                      output)
    return output

  def start(self):
    """Check the configuration, start lighttpd and wait until it answers.

    @raise LighttpdError: the configuration is invalid, or lighttpd exited
        or did not answer in time (it is then killed)
    """
    if self._monitor is not None:
      raise RuntimeError("lighttpd is already supervised")
    self._stopping.clear()
    self.check()
    self._Launch()
    self._monitor = threading.Thread(target=self._Monitor,
                                     name="lighttpd-supervisor", daemon=True)
    self._monitor.start()

  def stop(self, timeout=10.0):
    """Stop lighttpd gracefully; SIGKILL it after C{timeout} seconds.

    Graceful means SIGINT: lighttpd closes its listening socket, lets
    requests in flight finish (for at most the configuration's
    C{server.graceful-shutdown-timeout}) and exits.  Safe to call more than
    once and after a failed C{start()}.
    """
    self._stopping.set()
    with self._lock:
      instance = self._instance
    if instance is not None:
      process = instance.process
      if process.poll() is None:
        process.send_signal(signal.SIGINT)
      try:
        process.wait(timeout)
      except subprocess.TimeoutExpired:
        logging.warning("lighttpd (pid %d) still running %s s after SIGINT;"
                        " killing it", process.pid, timeout)
        process.kill()
        process.wait()
    if self._monitor is not None:
      self._monitor.join()
      self._monitor = None
    if instance is not None:
      instance.lifeline.Cut()
    self._instance = None

  def _Spawn(self):
    """Start lighttpd and its lifeline; return the L{_Instance}.

    The lifeline needs lighttpd's pid, so lighttpd's process comes first,
    but it waits in a C{sh} for a line on a pipe (the gate) before it execs
    lighttpd, and gets that line once the lifeline runs.  Should this
    process die in between, the gate reaches end-of-file and lighttpd never
    starts: there is no moment with a lighttpd and no lifeline.
    """
    try:
      log_offset = os.stat(self._layout.error_log).st_size
    except OSError:
      log_offset = 0
    if self._listen_socket is None:
      (script, stdin) = (_GATE + 'exec "$@"', subprocess.DEVNULL)
    else:
      (script, stdin) = (_GATE + _ACTIVATION_WRAPPER,
                         self._listen_socket.fileno())
    command = (["/bin/sh", "-c", script, "lighttpd"] + self._Command() +
               ["-D"])
    (gate, opener) = os.pipe()
    try:
      try:
        with open(os.open(self._stderr_path, os.O_WRONLY | os.O_CREAT |
                          os.O_TRUNC | os.O_NOFOLLOW, 0o600), "wb") as stderr:
          process = subprocess.Popen(command, stdin=stdin, stdout=gate,
                                     stderr=stderr, env=_ChildEnvironment(),
                                     start_new_session=True)
      finally:
        os.close(gate)
      lifeline = None
      try:
        lifeline = _Lifeline(process.pid)
        os.write(opener, b"go\n")
      except BaseException:
        process.kill()
        process.wait()
        if lifeline is not None:
          lifeline.Cut()
        raise
    finally:
      os.close(opener)
    return _Instance(process, lifeline, log_offset)

  def _Output(self, instance):
    """What lighttpd printed and logged since C{instance} started."""
    return _Tail(_ReadFrom(self._stderr_path) + "\n" +
                 _ReadFrom(self._layout.error_log, instance.log_offset))

  def _Launch(self):
    """Spawn lighttpd and wait until it answers.

    @raise LighttpdError: it exited or did not answer (it is then killed)
    """
    with self._lock:
      if self._stopping.is_set():
        raise LighttpdError("Not starting lighttpd: stopping")
      instance = self._Spawn()
      self._instance = instance
    try:
      self._WaitUntilAnswering(instance)
    except BaseException:
      instance.process.kill()
      instance.process.wait()
      instance.lifeline.Cut()
      raise

  def _WaitUntilAnswering(self, instance):
    deadline = time.monotonic() + self._start_timeout
    process = instance.process
    while True:
      if process.poll() is not None:
        raise LighttpdError("lighttpd exited with status %s while starting" %
                            process.returncode, self._Output(instance))
      if _Answers(self._address):
        return
      if time.monotonic() > deadline:
        raise LighttpdError("lighttpd did not answer on %s port %s within"
                            " %s s" % (self._address[0], self._address[1],
                                       self._start_timeout),
                            self._Output(instance))
      time.sleep(_POLL_INTERVAL)

  def _Monitor(self):
    """Wait for lighttpd to exit; unless stopping, restart it with back-off."""
    delay = self._backoff_initial
    while True:
      instance = self._instance
      instance.process.wait()
      if self._stopping.is_set():
        return
      instance.lifeline.Cut()
      if time.monotonic() - instance.started >= self._stable_period:
        delay = self._backoff_initial
      logging.error("lighttpd (pid %d) exited with status %s; restarting in"
                    " %.1f s. Its last output:\n%s", instance.process.pid,
                    instance.process.returncode, delay,
                    self._Output(instance))
      while True:
        if self._stopping.wait(delay):
          return
        delay = min(delay * 2, self._backoff_max)
        try:
          self._Launch()
          break
        except (LighttpdError, OSError) as err:
          if self._stopping.is_set():
            return
          logging.error("Restarting lighttpd failed; next try in %.1f s: %s",
                        delay, err)
      logging.info("lighttpd restarted (pid %d)", self._instance.process.pid)


def _ChildEnvironment():
  """This process's environment without its own socket-activation variables."""
  return dict((key, value) for (key, value) in os.environ.items()
              if key not in _SOCKET_ACTIVATION_ENV)
