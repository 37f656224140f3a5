"""The fastcgi backend's server: assembles lighttpd, flup and the handler.

What C{HttpServer(...)} returns when a daemon's flag says C{fastcgi}:

    client --TLS/HTTP--> lighttpd --FastCGI, Unix socket--> flup --> pipeline

- The daemon binds the TCP port itself (as Ganeti does, even a privileged
  one) and hands the bound socket to lighttpd (socket activation), so
  lighttpd never needs root; when the daemon runs as root, lighttpd runs as
  an unprivileged frontend user.
- The handler keeps running in the daemon's own process and user: the
  FastCGI listener runs in a thread of the daemon, or in forked copies of it
  (C{processes} > 1).  Its Unix socket belongs to the frontend user with
  mode 0600, so only lighttpd (and root) can connect.
- lighttpd's config is rendered by L{lighttpd_config} and lighttpd is run
  and restarted by L{lighttpd_supervisor}.

Settings beyond Ganeti's arguments come from L{fastcgi_settings}.
"""

import logging
import os
import signal
import threading

from ganeti.http import backends
from ganeti.http.backends import base
from ganeti.http.backends import selection
from ganeti.http.backends.fastcgi import drainer
from ganeti.http.backends.fastcgi import flup_gateway
from ganeti.http.backends.fastcgi import listener as fastcgi_listener
from ganeti.http.backends.fastcgi import peer_check
from ganeti.http.backends.fastcgi import settings as fastcgi_settings
from ganeti.http.backends.fastcgi import workers
from ganeti.http.backends.fastcgi import wsgi_application
from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.backends.fastcgi.lighttpd import layout as lighttpd_layout
from ganeti.http.backends.fastcgi.lighttpd import error_log as lighttpd_log
from ganeti.http.backends.fastcgi.lighttpd import limits as lighttpd_limits
from ganeti.http.backends.fastcgi.lighttpd import state_dirs
from ganeti.http.backends.fastcgi.lighttpd import (
  supervisor as lighttpd_supervisor)
from ganeti.http.core import pipeline
from ganeti.http.system import connection_children

#: Seconds lighttpd lets requests in flight finish after the daemon's
#: stop: 0, no limit (a Ganeti RPC may take hours; Ganeti 3.0's
#: per-connection children finish theirs however long it takes).
GRACEFUL_STOP_TIMEOUT = 0
#: Seconds L{FastCgiHttpServer.Stop} waits for lighttpd, then for the
#: backend, before killing them, when requests run in the daemon's own
#: threads ...
STOP_TIMEOUT = 30
#: ... and, when they run in other processes, before leaving those to
#: finish on their own.
RELEASE_WAIT = 0.5

#: How often a spawned backend checks that lighttpd is still there (s).
_SPAWNER_POLL_INTERVAL = 1.0


class FastCgiHttpServer(base.ServerBase):
  """A Ganeti HTTP server with lighttpd as frontend and flup as backend.

  Offers what Ganeti's code uses of a server (see L{base}).

  @param options: L{ServerOptions<ganeti.http.core.server_options.
      ServerOptions>}
  @param choice: the L{selection.Choice} that selected this backend
  @ivar spawned: whether a system lighttpd spawned this daemon as its
      FastCGI application (see L{selection.SpawnedByLighttpd})
  """
  backend = backends.FASTCGI

  def __init__(self, options, choice):
    self._SetUpFromOptions(options, pipeline.MAX_REQUEST_BODY_SIZE, choice)
    self.settings = fastcgi_settings.Load(choice.daemon_name)
    self._flag_source = choice.source
    self._error_log_path = lighttpd_log.LogPath(choice.daemon_name)
    self._ssl_params = options.ssl_params
    self._max_clients = options.max_clients
    self.spawned = selection.SpawnedByLighttpd()
    if self.spawned:
      # A system lighttpd started this daemon (bin-path) and listens on
      # the port itself; the FastCGI socket is our standard input.
      self._lighttpd = None
      self.socket = fastcgi_listener.InheritedFastCgiSocket()
      # Read once, for this server.
      selection.ForgetSpawned()
      self.server_address = (options.local_address, options.port)
    else:
      self._lighttpd = self._FindLighttpd()
      # Bound and listening, or taken over from the previous daemon.
      self.socket = self.listening.Open()
      self.server_address = self.socket.getsockname()[:2]
    self._state_dir = None
    self._fastcgi_socket = None
    self._listener = None
    self._listener_thread = None
    self._gateway = None
    self._workers = None
    self._children = None
    self._supervisor = None
    self._spawner = None
    self._spawner_watch = None

  def Start(self):
    """Start the FastCGI backend, then lighttpd; return when both serve.

    When spawned by a system lighttpd, only the backend is started, on the
    inherited socket.  A server made with Ganeti 3.2's signature also reaps
    the daemon's forgotten children (L{base.ServerBase._HoldReaper}), as
    3.2's does.
    """
    try:
      self._StartServing()
    except BaseException:
      if not self.spawned:
        # The daemon exits: the next one (a rollback, say) takes the port
        # over, and connections meanwhile wait instead of being refused.
        self.listening.PassOn(self.socket)
      raise
    self._HoldReaper()
    self._WakeMainLoopOnSignals()
    self._PublishStatus(
      self._ssl_params is not None,
      processes={"lighttpd": [self._supervisor.pid if self._supervisor
                              else self._spawner],
                 "workers": self._workers.pids if self._workers else []},
      state_dir=self._state_dir and self._state_dir.path)

  def _StartServing(self):
    if self.spawned:
      self._fastcgi_socket = self.socket
      # Not os.getppid(): lighttpd may have died while this process started,
      # leaving it with another parent, and it would then run forever.
      self._spawner = peer_check.ListeningProcess(self.socket)
      self._StartBackend()
      self._spawner_watch = _SpawnerWatch(self._spawner)
      logging.info("Serving FastCGI on the socket inherited from lighttpd"
                   " (pid %d)", self._spawner)
      return
    frontend = self.settings.FrontendIdentity()
    state_dirs.RemoveAbandoned(self.settings.runtime_dir)
    self._state_dir = state_dirs.StateDir(
      state_dirs.Create(self.settings.runtime_dir))
    socket_path = lighttpd_layout.StateLayout(
      self._state_dir.path).fastcgi_socket
    try:
      self._fastcgi_socket = fastcgi_listener.BindUnixSocket(
        socket_path, owner_uid=frontend.uid, owner_gid=frontend.gid)
      self._StartBackend()
      config = lighttpd_config.Render(FrontendSettings(
        self.settings, self.pipeline, self.ganeti_handler, self.server_address,
        self._ssl_params, self.ssl_verify_peer, self._state_dir.path,
        socket_path, frontend))
      self._supervisor = lighttpd_supervisor.LighttpdSupervisor(
        config, self._state_dir.path, listen_socket=self.socket,
        lighttpd_binary=self._lighttpd, user=frontend.user,
        group=frontend.group,
        error_log=lighttpd_log.ErrorLog(self._error_log_path),
        request_log=True)
      self._supervisor.Start()
    except lighttpd_supervisor.LighttpdError as err:
      self._StopBackend()
      raise lighttpd_supervisor.LighttpdError(
        "lighttpd for the fastcgi HTTP backend (selected by %s) did not"
        " start: %s" % (self._flag_source, err))
    except BaseException:  # Ctrl-C during start too: leave nothing behind
      self._StopBackend()
      raise
    logging.info("Serving HTTP%s on %s port %s with the fastcgi backend"
                 " (lighttpd pid %s, %d backend process(es))",
                 "S" if self._ssl_params else "", self.server_address[0],
                 self.server_address[1], self._supervisor.pid,
                 self.settings.processes)

  def _FindLighttpd(self):
    """The lighttpd binary to run; an error naming the flag if unusable."""
    try:
      if self.settings.lighttpd is None:
        return lighttpd_supervisor.FindLighttpd()
      if not os.access(self.settings.lighttpd, os.X_OK):
        raise lighttpd_supervisor.LighttpdError(
          "%s is not an executable file" % self.settings.lighttpd)
      return self.settings.lighttpd
    except lighttpd_supervisor.LighttpdError as err:
      raise selection.BackendFlagError(
        "The fastcgi HTTP backend was selected by %s, but lighttpd is not"
        " usable (%s); install lighttpd and lighttpd-mod-openssl or select"
        " the legacy backend" % (self._flag_source, err))

  def _StartBackend(self):
    # max_clients requests at once in all, split over the processes: fewer
    # threads per process also means less contention for its GIL.  A
    # single process serves each connection in a child of its own where
    # Ganeti's server did (3.0/3.1), with one thread to accept them.
    threads = -(-self._max_clients // self.settings.processes)
    if self.settings.processes == 1 and self.per_connection_processes:
      self._children = connection_children.ConnectionChildren(
        self._max_clients)
      threads = 1
    self._gateway = flup_gateway.FlupGateway(
      wsgi_application.WsgiApplication(
        self.pipeline, lambda: self.ganeti_handler,
        tls=self._ssl_params is not None,
        sendfile_dirs=self.settings.sendfile_dirs,
        # Our lighttpd logs every request (lighttpd/access_log); a system
        # lighttpd that spawned us does not log into our log.
        log_requests=self.spawned),
      multiprocess=self.settings.processes > 1,
      max_connections=threads * self.settings.processes)

    if self.spawned:
      check = peer_check.PeerCheck(
        peer_check.SpawningLighttpd(self._spawner))
    else:
      check = peer_check.PeerCheck(
        peer_check.LighttpdFromPidFile(
          lighttpd_layout.StateLayout(self._state_dir.path).pid_file,
          os.getpid()))

    def _MakeListener():
      return fastcgi_listener.FastCgiListener(
        self._gateway, self._fastcgi_socket, threads, check,
        children=self._children)

    if self.settings.processes > 1:
      self._workers = workers.ForkedWorkers(_MakeListener,
                                            self.settings.processes,
                                            keep=[self._fastcgi_socket])
      self._workers.Start()
    else:
      self._listener = _MakeListener()
      self._listener_thread = threading.Thread(target=self._listener.Serve,
                                               name="FastCGIListener",
                                               daemon=True)
      self._listener_thread.start()

  def _StopListener(self):
    if self._listener is not None:
      self._listener.Stop()
      self._listener_thread.join(STOP_TIMEOUT)
      self._listener = self._listener_thread = None

  def _HandToDrainer(self, lighttpd):
    """Leave the released C{lighttpd} (still serving) to a L{drainer}: it
    serves the FastCGI connections lighttpd still opens, each in a child
    of its own, reads lighttpd's logs and removes the state directory
    once lighttpd has exited.  Workers stop accepting (L{_StopBackend})."""
    self._StopListener()
    drainer.Start(
      lighttpd, self._state_dir, self._choice.daemon_name,
      keep=[self._fastcgi_socket],
      make_listener=lambda check: fastcgi_listener.FastCgiListener(
        self._gateway, self._fastcgi_socket, 1, check,
        children=connection_children.ConnectionChildren(self._max_clients)))
    self._state_dir = None

  def _StopBackend(self, release=False):
    if self._spawner_watch is not None:
      self._spawner_watch.set()
      self._spawner_watch = None
    if self._workers is not None:
      if release:
        self._workers.Stop(RELEASE_WAIT, kill=False)
      else:
        self._workers.Stop(STOP_TIMEOUT)
      self._workers = None
    self._StopListener()
    if self._children is not None:
      self._children.Release()
      self._children = None
    if self._fastcgi_socket is not None:
      self._fastcgi_socket.close()
      self._fastcgi_socket = None
    if self._state_dir is not None:
      self._state_dir.Remove()
      self._state_dir = None

  def Stop(self):
    """Stop accepting and pass the port on to the next daemon (L{base.
    ServerBase._SetUpFromOptions}, C{listening}) or close it; let the
    requests in flight finish.

    When they run in other processes (workers, or a child per connection
    as in Ganeti 3.0/3.1), lighttpd (stopped gracefully) and those
    processes finish them on their own after L{RELEASE_WAIT} seconds,
    attended by a L{drainer}, so that the daemon exits at once and a new
    one can start meanwhile, as Ganeti 3.0's per-connection children
    allowed.  When they run in this process's threads, Stop waits for
    them (L{STOP_TIMEOUT}).
    """
    release = self._workers is not None or self._children is not None
    self._WithdrawStatus()
    released = None
    if self._supervisor is not None:
      if release:
        released = self._supervisor.Release(RELEASE_WAIT)
      else:
        self._supervisor.Stop(STOP_TIMEOUT)
      self._supervisor = None
    if not self.spawned:
      # lighttpd no longer accepts: pass the socket on to the next daemon.
      self.listening.PassOn(self.socket)
    if released is not None:
      self._HandToDrainer(released)
    self._StopBackend(release=release)
    self.server_close()
    self._ReleaseReaper()

  def server_close(self):
    """Close the listening TCP socket."""
    self.socket.close()


def FrontendSettings(settings, request_pipeline, handler, address,
                     ssl_params, verify_peer, state_dir, socket_path,
                     frontend):
  """lighttpd's L{lighttpd_config.FrontendSettings} for a daemon's server
  (also what C{ganeti-http config} shows before the daemon starts).

  @param settings: the daemon's L{fastcgi_settings.FastCgiSettings}
  @param request_pipeline: the server's L{pipeline.RequestPipeline}
  @param handler: the daemon's C{HttpServerHandler}
  @param address: C{(host, port)} the server is bound to
  @param frontend: L{fastcgi_settings.FrontendAccount} lighttpd runs as
  """
  # A handler reading its body as a stream gets it from lighttpd as it
  # arrives (chunked uploads then need Content-Length: 411 otherwise);
  # other handlers get it after lighttpd has received all of it, which
  # the body size limit keeps small.
  streaming = pipeline.StreamsRequestBody(handler)
  max_request_body = request_pipeline.BodyLimit(handler) or 0
  return lighttpd_config.FrontendSettings(
    bind_address=address[0],
    port=address[1],
    fastcgi_socket=socket_path,
    state_dir=state_dir,
    ssl_cert_path=ssl_params and ssl_params.ssl_cert_path,
    ssl_key_path=ssl_params and ssl_params.ssl_key_path,
    ssl_chain_path=ssl_params and ssl_params.ssl_chain_path,
    # Without TLS there is no certificate to ask for (Ganeti's node
    # daemon passes ssl_verify_peer=True with --no-ssl too).
    ssl_verify_peer=verify_peer and ssl_params is not None,
    max_request_body=max_request_body,
    stream_request_body=streaming,
    graceful_shutdown_timeout=GRACEFUL_STOP_TIMEOUT,
    write_idle_timeout=settings.write_idle_timeout,
    max_fds=lighttpd_limits.ReachableMaxFds(),
    sendfile_dirs=settings.sendfile_dirs,
    request_log=True,
    username=frontend.user,
    groupname=frontend.group,
    socket_activation=True)


def _SpawnerWatch(spawner):
  """Watch, in a thread, the lighttpd that spawned this process: once it is
  gone nothing can reach our socket any more, so stop this process as that
  lighttpd would have on its way out (SIGTERM; a lighttpd killed with
  SIGKILL could not).

  @return: an event; set it to end the watch
  """
  done = threading.Event()

  def _Watch():
    while not done.wait(_SPAWNER_POLL_INTERVAL):
      if os.getppid() != spawner:
        logging.error("lighttpd (pid %d), which spawned this process, is"
                      " gone; stopping", spawner)
        os.kill(os.getpid(), signal.SIGTERM)
        return

  threading.Thread(target=_Watch, name="SpawnerWatch", daemon=True).start()
  return done

