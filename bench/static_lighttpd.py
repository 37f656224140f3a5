"""A plain lighttpd serving one static file: the ceiling of the bench.

Same binary, same TLS settings and same frontend account as the fastcgi
backend's lighttpd, run by the same supervisor, but answering from a
document root instead of passing requests to Python.
"""

import os
import shutil
import socket
import tempfile

from ganeti.http.backends.fastcgi import settings as fastcgi_settings
from ganeti.http.backends.fastcgi.lighttpd import (
  supervisor as lighttpd_supervisor)


def _Config(state_dir, docroot, port, tls_pem, verify_peer, frontend):
  """Return the text of a minimal static-file configuration."""
  modules = ['"mod_staticfile"']
  if tls_pem:
    modules.insert(0, '"mod_openssl"')
  lines = [
    "server.modules = (%s)" % ", ".join(modules),
    'server.compat-module-load = "disable"',
    'server.document-root = "%s"' % docroot,
    'server.errorlog = "%s"' % os.path.join(state_dir, "error.log"),
    'server.pid-file = "%s"' % os.path.join(state_dir, "lighttpd.pid"),
    'server.upload-dirs = ("%s")' % os.path.join(state_dir, "upload"),
    'server.bind = "127.0.0.1"',
    "server.port = %d" % port,
    'server.systemd-socket-activation = "enable"',
    'mimetype.assign = (".json" => "application/json")',
  ]
  if frontend.user:
    lines.append('server.username = "%s"' % frontend.user)
    lines.append('server.groupname = "%s"' % frontend.group)
  if tls_pem:
    lines.extend([
      'ssl.engine = "enable"',
      'ssl.pemfile = "%s"' % tls_pem,
      'ssl.openssl.ssl-conf-cmd = ("MinProtocol" => "TLSv1.2")',
    ])
    if verify_peer:
      lines.extend([
        'ssl.verifyclient.activate = "enable"',
        'ssl.verifyclient.enforce = "enable"',
        'ssl.verifyclient.ca-file = "%s"' % tls_pem,
      ])
  return "\n".join(lines) + "\n"


class StaticLighttpd(object):
  """lighttpd serving C{body} as C{path} on 127.0.0.1, on a free port.

  @param tls_pem: key+certificate PEM for HTTPS, or None for plain HTTP
  @param verify_peer: require a client certificate signed by C{tls_pem}
  @param docroot: serve the files of this directory instead (C{path} and
      C{body} are then unused); lighttpd's user must be able to read them
  """

  def __init__(self, path, body, tls_pem=None, verify_peer=False,
               docroot=None):
    self._path = path.lstrip("/")
    self._body = body
    self._tls_pem = tls_pem
    self._verify_peer = verify_peer
    self._given_docroot = docroot
    self._docroot = None
    self._state_dir = None
    self._socket = None
    self._supervisor = None
    self.port = None

  def _WriteDocroot(self, parent):
    self._docroot = tempfile.mkdtemp(prefix="bench-docroot-", dir=parent)
    os.chmod(self._docroot, 0o755)  # lighttpd runs as the frontend user
    file_path = os.path.join(self._docroot, self._path)
    with open(file_path, "wb") as handle:
      handle.write(self._body)
    os.chmod(file_path, 0o644)

  def Start(self):
    """Write the document root, then start lighttpd on a bound socket."""
    settings = fastcgi_settings.Load("bench")
    frontend = settings.FrontendIdentity()
    if self._given_docroot is None:
      self._WriteDocroot(settings.runtime_dir)
    self._state_dir = tempfile.mkdtemp(prefix="bench-static-",
                                       dir=settings.runtime_dir)
    self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    self._socket.bind(("127.0.0.1", 0))
    self._socket.listen(1024)
    self.port = self._socket.getsockname()[1]
    config = _Config(self._state_dir, self._given_docroot or self._docroot,
                     self.port, self._tls_pem, self._verify_peer, frontend)
    self._supervisor = lighttpd_supervisor.LighttpdSupervisor(
      config, self._state_dir, listen_socket=self._socket,
      user=frontend.user, group=frontend.group)
    self._supervisor.start()

  @property
  def pids(self):
    """lighttpd's pid, as a list."""
    return [self._supervisor.pid] if self._supervisor else []

  def Stop(self):
    """Stop lighttpd and remove every file this object made."""
    if self._supervisor is not None:
      self._supervisor.stop()
      self._supervisor = None
    if self._socket is not None:
      self._socket.close()
      self._socket = None
    for directory in (self._state_dir, self._docroot):
      if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)
    self._state_dir = self._docroot = None
