"""Run lighttpd for a daemon: check, start, keep alive, stop, leave nothing.

L{LighttpdSupervisor} owns one lighttpd process at a time:

  - C{Check()} writes the configuration into the state directory and has
    C{lighttpd -tt} validate it;
  - C{Start()} spawns C{lighttpd -D} (foreground), handing it the daemon's
    listening socket if there is one, and returns once lighttpd accepts
    connections;
  - a monitor thread restarts lighttpd if it dies: at once if it had
    started and answered (it was killed or crashed: every moment without it
    is a moment of refused service, and with a shared frontend account any
    process of that account can kill it), with exponential back-off
    between attempts that fail to start it;
  - C{Stop()} sends SIGINT (lighttpd's graceful shutdown: stop accepting,
    finish requests in flight; SIGTERM would drop them), SIGKILL after a
    timeout, and reaps everything it started; C{Release()} sends SIGINT
    too, but leaves a lighttpd still serving after a moment to exit on
    its own, the reading of its logs paused for the daemon's drainer.

Privileges: lighttpd started as root reads its certificate and key, opens
its pid file and binds before switching to C{server.username}; it opens its
upload files after.  With C{user}/C{group} given (and this
process root) the state directory is prepared accordingly: see
L{state_dirs.PrepareForLighttpd}.  The supervisor works in the state
directory through a descriptor of it and checks, before each run of
lighttpd, that the directory's path still leads there (L{state_dirs.
StateDir}).  lighttpd's error log is its standard error, a pipe the
daemon reads: the lines go, quoted, to a file of the daemon's
(L{error_log}) and into the daemon's errors when lighttpd fails.  Its
access log, if asked for, is another pipe the daemon reads: the daemon's
request log (L{access_log}).

How one lighttpd process is started, handed the listening socket and tied
to the daemon's life: L{process<lighttpd_process>}.
"""

import logging
import os
import shutil
import signal
import subprocess
import threading
import time

from ganeti.http.backends.fastcgi.lighttpd import access_log
from ganeti.http.backends.fastcgi.lighttpd import error_log as lighttpd_log
from ganeti.http.backends.fastcgi.lighttpd import output
from ganeti.http.backends.fastcgi.lighttpd import process as lighttpd_process
from ganeti.http.backends.fastcgi.lighttpd import state_dirs
from ganeti.http.backends.fastcgi.lighttpd.layout import StateLayout
from ganeti.http.system import trusted_dirs

DEFAULT_MODULE_DIR = "/usr/lib/lighttpd"

#: Where lighttpd usually lives when C{/usr/sbin} is not on C{PATH}.
_FALLBACK_BINARY = "/usr/sbin/lighttpd"

#: Seconds to wait for the rest of an exited lighttpd's output.
_OUTPUT_WAIT = 1.0

_POLL_INTERVAL = 0.05

#: Seconds C{lighttpd -tt} may take to check a configuration.
_CHECK_TIMEOUT = 60


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


class Instance(object):
  """One running lighttpd with its lifeline and the readers of its logs.

  @ivar process: its C{subprocess.Popen}
  @ivar output: the reader of its error log (its output), an
      L{error_log.Forwarder<lighttpd_log.Forwarder>}
  @ivar requests: the reader of its access log, an L{access_log.Reader},
      or None
  """

  def __init__(self, process, lifeline, output, requests):
    self.process = process
    self.lifeline = lifeline
    self.output = output
    self.requests = requests

  @property
  def readers(self):
    """The L{line_reader.LineReader}s of its logs."""
    return [reader for reader in (self.output, self.requests)
            if reader is not None]

  def JoinReaders(self, timeout=_OUTPUT_WAIT):
    """Wait for the last lines of an exited lighttpd to be written (at
    most C{timeout} seconds for each log; None: no limit)."""
    for reader in self.readers:
      reader.Join(timeout)


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
  @param backoff_initial: seconds before the second attempt when a restart
      fails to start lighttpd (the first attempt comes at once)
  @param backoff_max: longest wait between attempts (the wait doubles
      after each failed one)
  @param report_interval: seconds between two reports of lighttpd's exit
      in the log (the exits in between are counted)
  @param error_log: an L{error_log.ErrorLog<lighttpd_log.ErrorLog>} for
      what lighttpd prints, or None; closed by C{Stop()}
  @param request_log: read lighttpd's access log into the daemon's
      request log (L{access_log}; the configuration's C{request_log})
  """

  def __init__(self, config_text, state_dir, listen_socket=None,
               lighttpd_binary=None, module_dir=None, user=None, group=None,
               address=None, start_timeout=10.0, backoff_initial=0.5,
               backoff_max=10.0, report_interval=60.0, error_log=None,
               request_log=False):
    if listen_socket is None and address is None:
      raise ValueError("Either listen_socket or address is needed")
    self._config_text = config_text
    self._layout = StateLayout(state_dir)
    self._state_dir = None  # a state_dirs.StateDir from Check() to Stop()
    self._listen_socket = listen_socket
    self._binary = lighttpd_binary or FindLighttpd()
    if not os.access(self._binary, os.X_OK):
      raise LighttpdError("lighttpd binary %s is not executable" %
                          self._binary)
    self._module_dir = module_dir or DEFAULT_MODULE_DIR
    self._owner = state_dirs.ResolveOwner(user, group)
    if listen_socket is not None:
      address = listen_socket.getsockname()
    self._address = lighttpd_process.ProbeAddress(address)
    self._start_timeout = start_timeout
    self._backoff_initial = backoff_initial
    self._backoff_max = backoff_max
    self._report_interval = report_interval
    self._error_log = error_log
    self._request_log = request_log
    self._lock = threading.Lock()
    self._stopping = threading.Event()
    self._instance = None
    self._monitor = None

  @property
  def config_path(self):
    """Where the configuration is written."""
    return self._layout.config

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
    self.Start()
    return self

  def __exit__(self, *exc_info):
    self.Stop()

  def _Command(self):
    return [self._binary, "-f", self._layout.config, "-m", self._module_dir]

  def Check(self):
    """Write the configuration and have lighttpd check it (C{-tt}).

    @return: lighttpd's output (warnings), usually empty
    @raise LighttpdError: lighttpd rejects the configuration, or the
        state directory is not one only root and this user can change
    """
    try:
      if self._state_dir is None:
        self._state_dir = state_dirs.StateDir(self._layout.state_dir)
      state_dirs.PrepareForLighttpd(self._state_dir, self._layout,
                                    self._owner, self._config_text)
    except trusted_dirs.UntrustedPathError as err:
      raise LighttpdError("Refusing to run lighttpd: %s" % err)
    self._CheckStateDir()
    try:
      result = subprocess.run(
        self._Command() + ["-tt"], stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=lighttpd_process.ChildEnvironment(), timeout=_CHECK_TIMEOUT,
        check=False)
    except subprocess.TimeoutExpired:
      raise LighttpdError("lighttpd -tt did not finish checking %s within"
                          " %d s" % (self._layout.config, _CHECK_TIMEOUT))
    warnings = output.Quote(result.stdout)
    if result.returncode != 0:
      raise LighttpdError("lighttpd rejected its configuration %s" %
                          self._layout.config, warnings)
    if warnings:
      logging.warning("lighttpd warns about %s:\n%s", self._layout.config,
                      warnings)
    return warnings

  def _CheckStateDir(self):
    """Make sure lighttpd, which opens its files by path, finds them in
    the directory this process prepared."""
    try:
      self._state_dir.CheckPath()
    except trusted_dirs.UntrustedPathError as err:
      raise LighttpdError("Refusing to run lighttpd: %s" % err)

  def Start(self):
    """Check the configuration, start lighttpd and wait until it answers.

    @raise LighttpdError: the configuration is invalid, or lighttpd exited
        or did not answer in time (it is then killed)
    """
    if self._monitor is not None:
      raise RuntimeError("lighttpd is already supervised")
    self._stopping.clear()
    try:
      self.Check()
      self._Launch()
    except BaseException:
      self._CloseStateDir()
      raise
    self._monitor = threading.Thread(target=self._Monitor,
                                     name="lighttpd-supervisor", daemon=True)
    self._monitor.start()

  def Stop(self, timeout=10.0):
    """Stop lighttpd gracefully; SIGKILL it after C{timeout} seconds.

    Graceful means SIGINT: lighttpd closes its listening socket, lets
    requests in flight finish (for at most the configuration's
    C{server.graceful-shutdown-timeout}) and exits.  Safe to call more than
    once and after a failed C{Start()}.
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
      instance.JoinReaders()  # its last lines, before Close()
    self._instance = None
    if self._error_log is not None:
      self._error_log.Close()
    self._CloseStateDir()

  def _CloseStateDir(self):
    if self._state_dir is not None:
      self._state_dir.Close()
      self._state_dir = None

  def Release(self, timeout):
    """Stop lighttpd gracefully (SIGINT), waiting at most C{timeout}
    seconds for it to exit.  For a daemon that exits while its requests
    are served by other processes.

    @return: None if lighttpd exited (its last lines written); else its
        L{Instance}, without lifeline, the readers of its logs paused: a
        lighttpd left to finish its requests (its graceful shutdown
        timeout bounds that) and to exit on its own, for a
        L{drainer<ganeti.http.backends.fastcgi.drainer>} to attend
    """
    self._stopping.set()
    with self._lock:
      instance = self._instance
    released = None
    if instance is not None:
      if instance.process.poll() is None:
        instance.process.send_signal(signal.SIGINT)
      try:
        instance.process.wait(timeout)
      except subprocess.TimeoutExpired:
        for reader in instance.readers:
          reader.Pause()
        released = instance
      else:
        if self._monitor is not None:
          self._monitor.join()
        instance.JoinReaders()
      instance.lifeline.Cut()
    (self._monitor, self._instance) = (None, None)
    if self._error_log is not None:
      self._error_log.Close()  # a drainer opens it again
    self._CloseStateDir()
    return released

  def _Spawn(self):
    """Start lighttpd (C{-D}) and its lifeline; return the L{Instance}."""
    self._CheckStateDir()
    (read_end, write_end) = os.pipe2(os.O_CLOEXEC)
    (requests_read, requests_write) = (
      access_log.Pipe(self._owner) if self._request_log else (None, None))
    try:
      (process, lifeline) = lighttpd_process.Spawn(
        self._Command() + ["-D"], self._listen_socket, write_end,
        access_log=requests_write)
    except BaseException:
      os.close(read_end)
      if requests_read is not None:
        os.close(requests_read)
      raise
    finally:
      os.close(write_end)
      if requests_write is not None:
        os.close(requests_write)
    return Instance(process, lifeline,
                    lighttpd_log.Forwarder(read_end, self._error_log),
                    access_log.Reader(requests_read)
                    if requests_read is not None else None)

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
                            process.returncode,
                            instance.output.Recent(_OUTPUT_WAIT))
      if lighttpd_process.Answers(self._address):
        return
      if time.monotonic() > deadline:
        raise LighttpdError("lighttpd did not answer on %s port %s within"
                            " %s s" % (self._address[0], self._address[1],
                                       self._start_timeout),
                            instance.output.Recent())
      time.sleep(_POLL_INTERVAL)

  def _Monitor(self):
    """Wait for lighttpd to exit; unless stopping, restart it: at once,
    since it had answered, then with back-off while attempts fail.

    Exits are reported at most once per C{report_interval}, with the count
    of those in between: a kill loop must not fill the daemon's log.
    """
    (last_report, unreported) = (None, 0)
    while True:
      instance = self._instance
      instance.process.wait()
      if self._stopping.is_set():
        return
      instance.lifeline.Cut()
      now = time.monotonic()
      report = (last_report is None or
                now - last_report >= self._report_interval)
      if report:
        logging.error("lighttpd (pid %d) exited with status %s%s; restarting"
                      " it at once. Its last output:\n%s",
                      instance.process.pid, instance.process.returncode,
                      " (%d more exits since the last report)" %
                      unreported if unreported else "",
                      instance.output.Recent(_OUTPUT_WAIT))
        (last_report, unreported) = (now, 0)
      else:
        unreported += 1
      (wait, delay) = (0, self._backoff_initial)
      while True:
        if self._stopping.wait(wait):
          return
        try:
          self._Launch()
          break
        except (LighttpdError, OSError) as err:
          if self._stopping.is_set():
            return
          (wait, delay) = (delay, min(delay * 2, self._backoff_max))
          logging.error("Restarting lighttpd failed; next try in %.1f s: %s",
                        wait, err)
      logging.log(logging.INFO if report else logging.DEBUG,
                  "lighttpd restarted (pid %d)", self._instance.process.pid)
