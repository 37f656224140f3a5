"""What the servers of both backends share, and what Ganeti reads from one.

Ganeti's daemons and tests use, of the object C{HttpServer(...)} returns:
C{Start()}, C{Stop()}, C{server_close()}, C{server_address},
C{address_family}, C{socket}, C{allow_reuse_address}, C{ganeti_handler},
C{ssl_verify_peer} and C{ssl_verify_callback}; this project adds
C{backend}, the backend's name.  L{ServerBase} sets up the attributes that
come from Ganeti's arguments, the request pipeline both backends run
requests through, the child reaper Ganeti 3.2's server runs, the
status file C{ganeti-http status} reads (L{status_file}), and the
listening socket, passed on across a restart for Ganeti's daemons
(L{listening_socket_handover}).
"""

import os

from ganeti.http.backends import daemons
from ganeti.http.backends import selection
from ganeti.http.backends import status_file
from ganeti.http.core import pipeline
from ganeti.http.system import child_reaper
from ganeti.http.system import listening_socket_handover
from ganeti.http.system import signal_wakeup


class ServerBase(object):
  """The part of a backend's server that does not depend on the backend.

  A backend's constructor calls L{_SetUpFromOptions} first; its C{Start}
  calls L{_HoldReaper}, L{_WakeMainLoopOnSignals} and, once serving,
  L{_PublishStatus}; its C{Stop} calls L{_WithdrawStatus} first and
  L{_ReleaseReaper} last.

  @cvar backend: the backend's name (see L{ganeti.http.backends})
  @ivar ganeti_handler: the daemon's C{HttpServerHandler}
  @ivar pipeline: the L{pipeline.RequestPipeline} requests go through
  @ivar per_connection_processes: whether each connection is served in a
      child process of its own (L{ganeti.http.system.connection_children}), as Ganeti 3.0
      and 3.1's server does: true for a server made with their signature
  @ivar listening: the L{listening_socket_handover.ListeningSocket} a
      backend opens its TCP socket with, and passes it on with at the stop
  """
  backend = None
  allow_reuse_address = True

  def _SetUpFromOptions(self, options, max_body_size, choice=None):
    """Take what every backend needs from L{ServerOptions<ganeti.http.core.
    server_options.ServerOptions>}.

    @param max_body_size: largest request body of a buffered handler
    @param choice: the L{selection.Choice} that selected the backend (None
        for a server made directly: the program's name, source unknown)
    """
    self._choice = choice or selection.Choice(
      options.daemon_name or selection.DefaultDaemonName(), self.backend,
      "unknown (the server was made directly)")
    self._status_path = None
    self.ganeti_handler = options.handler
    # Ganeti 3.2's server reaps forgotten children; 3.0's main loop does.
    self._reaps_children = options.mainloop is None
    # Ganeti 3.0/3.1's server serves each connection in a child process of
    # its own, 3.2's in a thread.
    self.per_connection_processes = options.mainloop is not None
    self._release_reaper = None
    self.ssl_verify_peer = options.ssl_verify_peer
    self.ssl_verify_callback = options.ssl_verify_callback
    self.address_family = options.address_family
    self.pipeline = pipeline.RequestPipeline(
      pipeline.ClientCertificatePolicy(options.ssl_verify_peer,
                                       options.ssl_verify_callback),
      max_body_size=max_body_size,
      development_branch=options.development_branch)
    self.listening = listening_socket_handover.ListeningSocket(
      options.address_family, options.local_address, options.port,
      handover=self._Handover(options))

  def _Handover(self, options):
    """C{(daemon name, handover directory)} if the listening socket is
    passed on across a restart, else None.

    It is for Ganeti's daemons (L{daemons.NAMES}) as Ganeti 3.0/3.1 make
    their server (a main loop; their requests run in other processes, so a
    stop returns at once and the next daemon starts while they finish),
    unless turned off (L{selection.HandoverEnabled}).  Not for servers
    that tests make in their own process.
    """
    if (options.mainloop is None or
        self._choice.daemon_name not in daemons.NAMES or
        not selection.HandoverEnabled()):
      return None
    return (self._choice.daemon_name,
            os.environ.get(selection.ENV_HANDOVER_DIR) or
            listening_socket_handover.HandoverDir())

  def _HoldReaper(self):
    """Reap the daemon's forgotten children from now on (L{child_reaper}),
    if the server was made with Ganeti 3.2's signature, as 3.2's does."""
    if self._reaps_children and self._release_reaper is None:
      self._release_reaper = child_reaper.Hold()

  def _WakeMainLoopOnSignals(self):
    """With Ganeti 3.0/3.1's signature, have signals that land in our
    threads wake their main loop (L{signal_wakeup})."""
    if self.per_connection_processes:
      signal_wakeup.Install()

  def _ReleaseReaper(self):
    """Undo L{_HoldReaper}."""
    if self._release_reaper is not None:
      self._release_reaper()
      self._release_reaper = None

  def _PublishStatus(self, tls, processes=None, state_dir=None):
    """Write the status file of this daemon (L{status_file.Publish})."""
    self._status_path = status_file.Publish(
      self._choice.daemon_name, self.backend, self._choice.source,
      self.server_address, tls, processes=processes, state_dir=state_dir)

  def _WithdrawStatus(self):
    """Remove what L{_PublishStatus} wrote."""
    status_file.Withdraw(self._status_path)
    self._status_path = None
