"""What the servers of both backends share, and what Ganeti reads from one.

Ganeti's daemons and tests use, of the object C{HttpServer(...)} returns:
C{Start()}, C{Stop()}, C{server_close()}, C{server_address},
C{address_family}, C{socket}, C{allow_reuse_address}, C{ganeti_handler},
C{ssl_verify_peer} and C{ssl_verify_callback}; this project adds
C{backend}, the backend's name.  L{ServerBase} sets up the attributes that
come from Ganeti's arguments, the request pipeline both backends run
requests through, the child reaper Ganeti 3.2's server runs, and the
status file C{ganeti-http status} reads (L{status_file}).
"""

from ganeti.http.backends import selection
from ganeti.http.backends import status_file
from ganeti.http.core import pipeline
from ganeti.http.system import child_reaper


class ServerBase(object):
  """The part of a backend's server that does not depend on the backend.

  A backend's constructor calls L{_SetUpFromOptions} first; its C{Start}
  calls L{_HoldReaper} and, once serving, L{_PublishStatus}; its C{Stop}
  calls L{_WithdrawStatus} first and L{_ReleaseReaper} last.

  @cvar backend: the backend's name (see L{ganeti.http.backends})
  @ivar ganeti_handler: the daemon's C{HttpServerHandler}
  @ivar pipeline: the L{pipeline.RequestPipeline} requests go through
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
    self._release_reaper = None
    self.ssl_verify_peer = options.ssl_verify_peer
    self.ssl_verify_callback = options.ssl_verify_callback
    self.address_family = options.address_family
    self.pipeline = pipeline.RequestPipeline(
      pipeline.ClientCertificatePolicy(options.ssl_verify_peer,
                                       options.ssl_verify_callback),
      max_body_size=max_body_size)

  def _HoldReaper(self):
    """Reap the daemon's forgotten children from now on (L{child_reaper}),
    if the server was made with Ganeti 3.2's signature, as 3.2's does."""
    if self._reaps_children and self._release_reaper is None:
      self._release_reaper = child_reaper.Hold()

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
