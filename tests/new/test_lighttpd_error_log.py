"""lighttpd's error log in Ganeti's log directory (issue 11 §2): written by
the daemon (root here, as noded) from lighttpd's standard error, quoted;
refused client certificates there with the peer's address; reopened after
a rotation as Ganeti's logrotate configuration does it; out of reach of
lighttpd's account (nobody here)."""

import datetime
import os
import signal
import socket
import ssl
import stat
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ganeti.http.backends.fastcgi.lighttpd import output
from tests.new.lighttpd_helpers import REPO, WaitFor
from tests.new.test_runtime_dir_attacks import AsNobody
from tests.pki import WriteCredential

pytestmark = pytest.mark.skipif(
  os.geteuid() != 0, reason="runs the daemon as root, lighttpd as nobody;"
  " CI runs as root")

#: A daemon as Ganeti runs one: its umask, a SIGHUP handler of its own
#: (Ganeti's reopens the daemon's log), TLS with client certificates.
_DAEMON = """
import logging, os, signal, sys
os.umask(int(sys.argv[2], 8))
sys.path.insert(0, %r)
from ganeti import http
from ganeti.http import server as http_server
signal.signal(signal.SIGHUP, lambda *_: logging.info("SIGHUP"))
class Handler(http_server.HttpServerHandler):
  def HandleRequest(self, req):
    return "served"
server = http_server.HttpServer(
  "127.0.0.1", 0, Handler(), daemon_name="test",
  ssl_params=http.HttpSslParams(sys.argv[1], sys.argv[1]),
  ssl_verify_peer=True)
server.Start()
print(server.server_address[1], server._supervisor.pid, flush=True)
sys.stdin.read()
server.Stop()
"""

_REFUSED = "certificate verify failed (127.0.0.1)"


class _Daemon(object):
  """The daemon above in a process of its own."""

  def __init__(self, pki, config, umask=0o077):
    self.process = subprocess.Popen(
      [sys.executable, "-c", _DAEMON % REPO, pki.cluster.path, "%o" % umask],
      stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO,
      env=dict(os.environ, GANETI_HTTP_BACKEND="fastcgi",
               GANETI_HTTP_BACKEND_CONFIG=str(config)))
    line = self.process.stdout.readline().split()
    if not line:
      self.Stop()
      pytest.fail("the daemon did not start")
    (self.port, self.lighttpd) = [int(word) for word in line]

  def Stop(self):
    self.process.stdin.close()
    self.process.wait(60)
    self.process.stdout.close()


@pytest.fixture
def daemon(pki, tmp_path):
  """Start daemons (C{daemon(umask=...)}); stop them at the end."""
  config = tmp_path / "http-backend.conf"
  config.write_text("[fastcgi]\nfrontend-user = nobody\n")
  started = []

  def _Start(**kwargs):
    started.append(_Daemon(pki, config, **kwargs))
    return started[-1]
  yield _Start
  for running in started:
    if running.process.returncode is None:
      running.Stop()


@pytest.fixture
def log_path(lighttpd_log_dir):
  return os.path.join(lighttpd_log_dir, "lighttpd-test.log")


def _Read(path):
  with open(path, "rb") as handle:
    return handle.read().decode("utf-8")


def _Handshake(port, certificate_path):
  """A TLS handshake with the given client certificate (refused here)."""
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  context.check_hostname = False
  context.verify_mode = ssl.CERT_NONE
  context.load_cert_chain(certificate_path)
  try:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
      with context.wrap_socket(sock) as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        tls.recv(1)
  except (ssl.SSLError, OSError):
    pass


def _AllQuoted(text):
  return all(line.startswith(output.QUOTE_MARK)
             for line in text.splitlines())


@pytest.mark.parametrize("umask", [0o077, 0o000])
def test_log_written_kept_and_reopened_after_rotation(daemon, pki, log_path,
                                                      umask):
  first = daemon(umask=umask)
  WaitFor(lambda: os.path.exists(log_path) and
          "server started" in _Read(log_path))
  info = os.stat(log_path)
  assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (0, 0o600)

  _Handshake(first.port, pki.foreign.path)
  WaitFor(lambda: _REFUSED in _Read(log_path))

  # Ganeti's logrotate: rename, create 640, then daemon-util
  # rotate-all-logs sends the daemon SIGHUP.
  os.rename(log_path, log_path + ".1")
  os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640))
  os.kill(first.process.pid, signal.SIGHUP)
  rotated = _Read(log_path + ".1")
  _Handshake(first.port, pki.foreign.path)
  WaitFor(lambda: _REFUSED in _Read(log_path))
  assert _Read(log_path + ".1") == rotated
  assert stat.S_IMODE(os.stat(log_path).st_mode) == 0o640
  first.Stop()

  before_restart = _Read(log_path)
  assert "server stopped" in before_restart
  second = daemon(umask=umask)
  WaitFor(lambda: _Read(log_path).count("server started") == 1 and
          len(_Read(log_path)) > len(before_restart))
  assert _Read(log_path).startswith(before_restart)  # kept, appended to
  second.Stop()
  assert _AllQuoted(_Read(log_path)) and _AllQuoted(rotated)


def _HostileCertificate(path):
  """A self-signed client certificate whose subject carries a line break,
  a forged log line, a terminal escape and a right-to-left override."""
  key = ec.generate_private_key(ec.SECP256R1())
  name = x509.Name([x509.NameAttribute(
    NameOID.COMMON_NAME,
    "x\n2026-12-05 12:00:00: (server.c.1) forged (192.0.2.9) \x1b[2J\u202e")])
  now = datetime.datetime.now(datetime.timezone.utc)
  certificate = (x509.CertificateBuilder().subject_name(name)
                 .issuer_name(name).public_key(key.public_key())
                 .serial_number(x509.random_serial_number())
                 .not_valid_before(now - datetime.timedelta(days=1))
                 .not_valid_after(now + datetime.timedelta(days=1))
                 .sign(key, hashes.SHA256()))
  return WriteCredential(path, key, certificate).path


def test_client_certificate_subject_cannot_forge_lines(daemon, log_path,
                                                       tmp_path):
  """A client's certificate subject appears in lighttpd's line about the
  refusal: its line break, escape and override arrive escaped, within that
  line."""
  running = daemon()
  _Handshake(running.port, _HostileCertificate(str(tmp_path / "evil.pem")))
  WaitFor(lambda: _REFUSED in _Read(log_path))
  text = _Read(log_path)
  assert _AllQuoted(text)
  for raw in ("\x1b", "\u202e", "\r"):
    assert raw not in text
  (subject_line, ) = [line for line in text.splitlines() if "forged" in line]
  # OpenSSL escaped the subject (\0A, \1B, \xe2...), the daemon its
  # backslashes: the forged line stays part of lighttpd's.
  assert "verify error" in subject_line
  assert "x\\\\0A2026-12-05 12:00:00" in subject_line
  assert not [line for line in text.splitlines()
              if line.startswith(output.QUOTE_MARK + "2026-12-05 12:00:00")]


_WRITE_AS_LIGHTTPD = """
import sys
for path in sys.argv[1:]:
  try:
    open(path, "ab").write(b"forged\\n")
  except PermissionError:
    print("refused", path)
"""


def test_frontend_account_cannot_write_the_log(daemon, log_path,
                                               lighttpd_log_dir):
  """lighttpd's account (nobody) can open neither the log (the directory
  lets it in here) nor lighttpd's standard error (lighttpd dropped
  privileges, so its /proc entries stay root's)."""
  os.chmod(lighttpd_log_dir, 0o755)
  running = daemon()
  WaitFor(lambda: os.path.exists(log_path) and
          "server started" in _Read(log_path))
  targets = [log_path, "/proc/%d/fd/2" % running.lighttpd]
  printed = AsNobody(_WRITE_AS_LIGHTTPD, *targets)
  assert printed.splitlines() == ["refused %s" % path for path in targets]
  running.Stop()
  assert "forged" not in _Read(log_path)


@pytest.mark.parametrize("plant", ["symlink", "hardlink", "fifo"])
def test_planted_entry_is_replaced_not_followed(daemon, log_path, tmp_path,
                                                plant):
  """Members of Ganeti's daemons group may write Ganeti's log directory:
  an entry planted for the log never makes root write elsewhere."""
  victim = tmp_path / "victim"
  victim.write_text("precious\n")
  if plant == "symlink":
    os.symlink(str(victim), log_path)
  elif plant == "hardlink":
    os.link(str(victim), log_path)
  else:
    os.mkfifo(log_path)
  daemon()
  WaitFor(lambda: os.path.isfile(log_path) and
          "server started" in _Read(log_path))
  assert victim.read_text() == "precious\n"
  info = os.lstat(log_path)
  assert stat.S_ISREG(info.st_mode) and info.st_nlink == 1
  assert stat.S_IMODE(info.st_mode) == 0o600
