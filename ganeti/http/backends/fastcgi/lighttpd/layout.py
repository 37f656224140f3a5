"""Where lighttpd's files live inside a server's state directory.

Pure, like the renderer (L{config}) that points lighttpd at these paths;
L{state_dirs} creates them with the right owners and modes.
"""

import dataclasses
import os


@dataclasses.dataclass(frozen=True)
class StateLayout(object):
  """Where lighttpd's files live inside its state directory.

  The renderer points lighttpd at these paths; the supervisor creates them
  with the right owners and modes.
  """
  state_dir: str

  def _Path(self, name):
    return os.path.join(self.state_dir, name)

  @property
  def config(self):
    """The configuration file."""
    return self._Path("lighttpd.conf")

  @property
  def pid_file(self):
    """Written by lighttpd before it drops privileges."""
    return self._Path("lighttpd.pid")

  @property
  def upload_dir(self):
    """Temporary files for request bodies lighttpd buffers."""
    return self._Path("upload")

  @property
  def document_root(self):
    """An empty directory: lighttpd never serves files."""
    return self._Path("empty-docroot")

  @property
  def fastcgi_socket(self):
    """The daemon's FastCGI socket (made by the daemon, not lighttpd)."""
    return self._Path("fastcgi.sock")
