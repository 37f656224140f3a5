"""The lighttpd configuration a daemon would run on the fastcgi backend,
made by the daemon's own code (L{fastcgi_server.FrontendSettings}) from
what the daemon would start with: its settings in the INI file, Ganeti's
certificate, port and handler.

Two things are only known once a daemon starts: its private directory
(a new one at each start; given here by the caller) and the address it
binds (Ganeti's command-line option; the running daemon's address when
it runs, else C{0.0.0.0}: with socket activation lighttpd takes the bound
socket as it is, so the address is informational).
"""

import collections
import os

from ganeti.http.backends import daemons
from ganeti.http.backends.fastcgi import server as fastcgi_server
from ganeti.http.backends.fastcgi import settings as fastcgi_settings
from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.backends.fastcgi.lighttpd import layout as lighttpd_layout
from ganeti.http.backends.fastcgi.lighttpd import state_dirs
from ganeti.http.core import pipeline
from ganeti.http.system import trusted_dirs

#: The parts of C{HttpSslParams} the configuration uses (the paths), so
#: that a missing certificate is reported by the checks, not raised here.
_CertificatePaths = collections.namedtuple(
  "_CertificatePaths", ["ssl_key_path", "ssl_cert_path", "ssl_chain_path"])


def Frontend(daemon, settings):
  """Who lighttpd runs as for C{daemon}: the frontend account when the
  daemon runs as root, else nobody to switch to (lighttpd runs as the
  daemon's user).

  @raise fastcgi_settings.SettingsError: the account does not exist
  """
  if daemon.user == "root":
    return settings.FrontendIdentity()
  return fastcgi_settings.FrontendAccount()


def RuntimeDir(daemon, settings):
  """The runtime directory C{daemon} would use: its C{runtime-dir}
  setting, else the default for the user the daemon runs as (not the
  default of this process's user, which L{fastcgi_settings.Load} gives)."""
  if settings.Source("runtime-dir"):
    return settings.runtime_dir
  return trusted_dirs.DefaultRuntimeDir(daemon.user)


def PlaceholderStateDir(daemon, settings):
  """The private directory C{daemon} would make at its next start, with
  a placeholder for the random part of its name."""
  return os.path.join(RuntimeDir(daemon, settings),
                      state_dirs.PREFIX + "XXXXXXXX")


def Render(daemon, state_dir=None, address=None, environ=os.environ):
  """Return C{(configuration text, settings, frontend account)} of
  C{daemon}'s lighttpd with C{state_dir} as its private directory.

  @param state_dir: default L{PlaceholderStateDir}
  @param address: C{(host, port)}; default C{("0.0.0.0", Ganeti's port)}
  @raise selection.BackendFlagError: the settings are malformed (or
      L{fastcgi_settings.SettingsError})
  """
  settings = fastcgi_settings.Load(daemon.name, environ)
  frontend = Frontend(daemon, settings)
  if state_dir is None:
    state_dir = PlaceholderStateDir(daemon, settings)
  certificate = daemons.CertificatePath(daemon, environ)
  request_pipeline = pipeline.RequestPipeline(
    pipeline.ClientCertificatePolicy(daemon.verify_peer, None),
    max_body_size=pipeline.MAX_REQUEST_BODY_SIZE)
  frontend_settings = fastcgi_server.FrontendSettings(
    settings, request_pipeline, daemons.HandlerClass(daemon),
    tuple(address or ("0.0.0.0", daemons.Port(daemon))),
    _CertificatePaths(certificate, certificate, None), daemon.verify_peer,
    state_dir, lighttpd_layout.StateLayout(state_dir).fastcgi_socket,
    frontend)
  return (lighttpd_config.Render(frontend_settings), settings, frontend)
