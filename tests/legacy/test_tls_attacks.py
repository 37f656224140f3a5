"""TLS attacks on a server configured as Ganeti's node daemon configures
it (client certificates of the cluster required, then the digest check),
on both backends (issue 14's list of what holds; docs/security.md, "Client
certificates and TLS").

Where a refusal could as well come from the client (old protocols,
renegotiation, early data), a control beside the attack's test, a test
without a backend, shows the same client doing the thing against a server
that allows it (a Python or openssl server made here).
"""

import datetime
import logging
import os
import select
import socket
import ssl
import struct
import subprocess
import threading
import time
import types
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from ganeti.http import server as http_server
from tests.conftest import SslParams
from tests.pki import WriteCredential
from tests.raw_http import ReadUntilClosed

#: Seconds any one client step may take before the test fails.
TIMEOUT = 10

#: OpenSSL 3's SSL_OP_ALLOW_CLIENT_RENEGOTIATION (Python has no name for
#: it): only the controls' servers set it.
_ALLOW_CLIENT_RENEGOTIATION = 0x100

_TLS_VERSIONS = pytest.mark.parametrize(
  "maximum", [ssl.TLSVersion.TLSv1_2, None], ids=["TLS 1.2", "TLS 1.3"])

_OLD_VERSIONS = pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])


class _RecordingHandler(http_server.HttpServerHandler):
  """Writes down the path of every request it runs."""

  def __init__(self):
    http_server.HttpServerHandler.__init__(self)
    self.paths = []

  def HandleRequest(self, req):
    self.paths.append(req.request_path)
    return "served"


@pytest.fixture
def node_server(serve, pki):
  """A server of the backend under test, configured as noded: its
  C{paths} are the requests the handler ran, its C{digests} those the
  digest check saw (only the node certificate passes it)."""
  handler = _RecordingHandler()
  digests = []

  def _Callback(digest):
    digests.append(digest)
    return digest == pki.node.digest

  running = serve(handler, ssl_params=SslParams(pki.cluster),
                  ssl_verify_peer=True, ssl_verify_callback=_Callback)
  return types.SimpleNamespace(port=running.port, paths=handler.paths,
                               digests=digests)


# Clients ----------------------------------------------------------------


def _Context(certificate_path=None, maximum=None):
  """A stdlib client context presenting C{certificate_path} (key and
  certificate in one file), if any."""
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
  context.check_hostname = False
  context.verify_mode = ssl.CERT_NONE
  if certificate_path:
    context.load_cert_chain(certificate_path)
  if maximum:
    context.maximum_version = maximum
  return context


def _OldProtocolContext(version, certificate_path=None):
  """A client context offering only C{version}, with every cipher OpenSSL
  has (security level 0: OpenSSL 3 offers TLS 1.0/1.1 at no other)."""
  context = _Context(certificate_path)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    context.minimum_version = getattr(ssl.TLSVersion, version)
    context.maximum_version = getattr(ssl.TLSVersion, version)
  context.set_ciphers("ALL:@SECLEVEL=0")
  return context


def _Get(port, context, path, session=None):
  """One HTTP/1.0 request over a new TLS connection; the answer's status
  line and what the connection was."""
  with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
    with context.wrap_socket(raw, session=session) as tls:
      version = tls.version()
      tls.sendall(b"GET %s HTTP/1.0\r\n\r\n" % path.encode("ascii"))
      answer = ReadUntilClosed(tls)
      return types.SimpleNamespace(
        status=answer.split(b"\r\n", 1)[0], version=version,
        session=tls.session, reused=tls.session_reused)


def _RenegotiatingClient(port, first, second):
  """A TLS 1.2 connection that presents C{first} in its handshake, then
  renegotiates presenting C{second} (None: no certificate), then asks for
  /renegotiated; the status line, or the C{SSL.Error} that ended it.

  pyOpenSSL, since the stdlib client cannot renegotiate.
  """
  def _OpenSslContext(credential):
    context = SSL.Context(SSL.TLS_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    if credential is not None:
      context.use_certificate_file(credential.path)
      context.use_privatekey_file(credential.path)
    return context

  with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
    # pyOpenSSL needs a blocking socket: the kernel bounds the waits.
    raw.settimeout(None)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO,
                   struct.pack("ll", TIMEOUT, 0))
    connection = SSL.Connection(_OpenSslContext(first), raw)
    connection.set_connect_state()
    connection.do_handshake()
    connection.set_context(_OpenSslContext(second))
    try:
      assert connection.renegotiate()
      connection.do_handshake()
      connection.sendall(b"GET /renegotiated HTTP/1.0\r\n\r\n")
      return connection.recv(100).split(b"\r\n", 1)[0]
    except SSL.Error as err:
      return err


def _OpenSslClient(port, credential, stdin, options, until=None):
  """C{openssl s_client} with TLS 1.3 and C{credential}, sending C{stdin};
  its output.  It ends when the server closes the connection, or, after
  a line that starts with C{until}, when the client sees the end of its
  input (once it has done what it was doing: writing a session file)."""
  # Line-buffered: s_client's stdio would hold back what it prints.
  client = subprocess.Popen(
    ["stdbuf", "-oL", "openssl", "s_client", "-connect",
     "127.0.0.1:%d" % port, "-tls1_3", "-cert", credential.path, "-key",
     credential.path] + options,
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    bufsize=0)  # select() sees what no reader's buffer holds back
  output = []
  try:
    client.stdin.write(stdin)
    deadline = time.monotonic() + TIMEOUT * 3
    while True:
      (ready, _, _) = select.select([client.stdout], [], [],
                                    max(0, deadline - time.monotonic()))
      assert ready, "openssl s_client hangs: %r" % output
      line = client.stdout.readline().decode("utf-8", "replace")
      output.append(line)
      if not line:
        return "".join(output)
      if until and line.startswith(until):
        client.stdin.close()
  finally:
    client.kill()
    client.wait()
    client.stdin.close()
    client.stdout.close()


class _PermissiveServer(object):
  """A stdlib TLS server in a thread, for the controls: it answers each
  request on a connection with 200 (HTTP/1.0) and closes; C{errors}
  holds what ended a connection early."""

  def __init__(self, context):
    self.context = context
    self.errors = []
    self.listener = socket.create_server(("127.0.0.1", 0))
    self.port = self.listener.getsockname()[1]
    self.thread = threading.Thread(target=self._Serve, daemon=True)
    self.thread.start()

  def _Serve(self):
    while True:
      try:
        (raw, _) = self.listener.accept()
      except OSError:
        return  # closed by Close
      raw.settimeout(TIMEOUT)
      try:
        with self.context.wrap_socket(raw, server_side=True) as tls:
          request = b""
          while b"\r\n\r\n" not in request:
            data = tls.recv(4096)
            if not data:
              break
            request += data
          if request:
            tls.sendall(b"HTTP/1.0 200 OK\r\n\r\nok")
      except (OSError, ssl.SSLError) as err:
        self.errors.append(err)
      finally:
        raw.close()

  def Close(self):
    self.listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
    self.listener.close()
    self.thread.join(TIMEOUT)
    assert not self.thread.is_alive()


@pytest.fixture
def permissive_server(pki):
  """C{permissive_server(configure)}: a L{_PermissiveServer} with the
  cluster's certificate, after C{configure(context)}."""
  started = []

  def _Start(configure):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.cluster.path)
    configure(context)
    started.append(_PermissiveServer(context))
    return started[-1]

  yield _Start
  for server in started:
    server.Close()


# Client certificates not of the cluster ---------------------------------


def _ClusterKeyAndName(pki):
  with open(pki.cluster.path, "rb") as handle:
    pem = handle.read()
  key = serialization.load_pem_private_key(pem, None)
  return (key, x509.load_pem_x509_certificate(pem).subject)


def _Certificate(subject, issuer, issuer_key, key, days=(-1, 30), ca=False):
  now = datetime.datetime.now(datetime.timezone.utc)
  builder = (x509.CertificateBuilder().subject_name(subject)
             .issuer_name(issuer).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now + datetime.timedelta(days=days[0]))
             .not_valid_after(now + datetime.timedelta(days=days[1])))
  if ca:
    builder = builder.add_extension(
      x509.BasicConstraints(ca=True, path_length=None), critical=True)
  return builder.sign(issuer_key, hashes.SHA256())


def _NodeName():
  return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node1")])


def _Expired(pki, path):
  """A client certificate the cluster's key signed, expired yesterday."""
  (cluster_key, cluster_name) = _ClusterKeyAndName(pki)
  key = ec.generate_private_key(ec.SECP256R1())
  return WriteCredential(path, key, _Certificate(
    _NodeName(), cluster_name, cluster_key, key, days=(-30, -1))).path


def _FakeCluster(pki, path):
  """A client certificate of a CA that has the cluster's name, not its key."""
  (_, cluster_name) = _ClusterKeyAndName(pki)
  fake_key = ec.generate_private_key(ec.SECP256R1())
  key = ec.generate_private_key(ec.SECP256R1())
  return WriteCredential(path, key, _Certificate(
    _NodeName(), cluster_name, fake_key, key)).path


def _SelfSignedClusterName(pki, path):
  """A self-signed certificate that names itself as the cluster."""
  (_, cluster_name) = _ClusterKeyAndName(pki)
  key = ec.generate_private_key(ec.SECP256R1())
  return WriteCredential(path, key, _Certificate(
    cluster_name, cluster_name, key, key, ca=True)).path


@pytest.mark.parametrize("make", [_Expired, _FakeCluster,
                                  _SelfSignedClusterName],
                         ids=["expired", "fake CA with the cluster's name",
                              "self-signed with the cluster's name"])
@_TLS_VERSIONS
def test_client_certificates_not_of_the_cluster_are_refused(
    node_server, pki, tmp_path, make, maximum):
  context = _Context(make(pki, str(tmp_path / "client.pem")), maximum)
  # TLS 1.3: the client's side of the handshake completes; the server's
  # alert arrives in place of the answer.
  with pytest.raises((ssl.SSLError, ConnectionError)):
    _Get(node_server.port, context, "/attack")
  assert (node_server.paths, node_server.digests) == ([], [])


# TLS 1.0 and 1.1 ----------------------------------------------------------


@_OLD_VERSIONS
def test_old_protocols_are_refused(node_server, pki, version):
  with pytest.raises(ssl.SSLError) as info:
    _Get(node_server.port, _OldProtocolContext(version, pki.node.path),
         "/attack")
  assert "protocol version" in str(info.value)
  assert node_server.paths == []


@_OLD_VERSIONS
def test_control_the_client_offers_old_protocols(permissive_server, version):
  def _AllowOld(context):
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", DeprecationWarning)
      context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("ALL:@SECLEVEL=0")
  server = permissive_server(_AllowOld)
  answer = _Get(server.port, _OldProtocolContext(version), "/")
  assert (answer.status, answer.version) == (
    b"HTTP/1.0 200 OK", version.replace("_", "."))


# Renegotiation ----------------------------------------------------------


@pytest.mark.parametrize("second", ["node", "foreign", None],
                         ids=["same certificate", "foreign certificate",
                              "no certificate"])
def test_client_renegotiation_is_refused(node_server, pki, second):
  """Both backends refuse a client's renegotiation (a no_renegotiation
  alert, which ends the connection), whatever it would present."""
  result = _RenegotiatingClient(node_server.port, pki.node,
                                second and getattr(pki, second))
  assert isinstance(result, SSL.Error), result
  assert "no renegotiation" in str(result)
  assert node_server.paths == []


def test_control_the_client_renegotiates(permissive_server, pki):
  """Where a server allows it, the client renegotiates, and a server that
  requires a certificate requires it again in the renegotiation."""
  def _AllowRenegotiation(context):
    context.options |= _ALLOW_CLIENT_RENEGOTIATION
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(pki.cluster.path)
  server = permissive_server(_AllowRenegotiation)
  assert _RenegotiatingClient(server.port, pki.node, pki.node) == (
    b"HTTP/1.0 200 OK")
  assert server.errors == []
  refused = _RenegotiatingClient(server.port, pki.node, None)
  assert isinstance(refused, SSL.Error), refused
  assert "no renegotiation" not in str(refused)


# Session resumption -----------------------------------------------------


@pytest.mark.parametrize("who,status", [("node", b"HTTP/1.0 200 OK"),
                                        ("cluster", b"HTTP/1.0 403")],
                         ids=["node certificate", "refused by digest"])
@_TLS_VERSIONS
def test_resumed_session_keeps_its_certificate(node_server, pki, maximum,
                                               who, status):
  """A resumed session is the certificate it was made with: the digest
  check sees that one again, and refuses it again if it refused it."""
  context = _Context(getattr(pki, who).path, maximum)
  first = _Get(node_server.port, context, "/first")
  resumed = _Get(node_server.port, context, "/resumed", first.session)
  assert (first.reused, resumed.reused) == (False, True)
  for answer in (first, resumed):
    assert answer.status.replace(b"1.1", b"1.0").startswith(status)
  assert node_server.digests == [getattr(pki, who).digest] * 2
  assert node_server.paths == (["/first", "/resumed"] if who == "node"
                               else [])


@_TLS_VERSIONS
def test_session_of_a_server_without_client_certificates_is_not_resumed(
    serve, node_server, pki, maximum):
  """A session that RAPI (same cluster certificate, no client
  certificates) gave a client without a certificate does not resume on
  noded: each server's sessions and tickets are its own."""
  rapi = serve(_RecordingHandler(), ssl_params=SslParams(pki.cluster))
  context = _Context(maximum=maximum)
  session = _Get(rapi.port, context, "/rapi").session
  assert session.has_ticket or session.id
  with pytest.raises((ssl.SSLError, ConnectionError)):
    _Get(node_server.port, context, "/attack", session)
  assert (node_server.paths, node_server.digests) == ([], [])


@pytest.mark.parametrize("who", ["foreign", None],
                         ids=["foreign certificate", "no certificate"])
@_TLS_VERSIONS
def test_refused_handshake_leaves_no_session(node_server, pki, maximum, who):
  """A client refused in the handshake gets no session it could resume
  (no session id, no ticket), and offering it gets it refused again."""
  context = _Context(who and getattr(pki, who).path, maximum)
  with socket.create_connection(("127.0.0.1", node_server.port),
                                timeout=TIMEOUT) as raw:
    with context.wrap_socket(raw, do_handshake_on_connect=False) as tls:
      with pytest.raises((ssl.SSLError, ConnectionError)):
        tls.do_handshake()
        tls.sendall(b"GET /attack HTTP/1.0\r\n\r\n")
        tls.recv(100)
      session = tls.session
  assert (session.id, session.has_ticket) == (b"", False)
  with pytest.raises((ssl.SSLError, ConnectionError)):
    _Get(node_server.port, context, "/resumed", session)
  assert (node_server.paths, node_server.digests) == ([], [])


# 0-RTT ------------------------------------------------------------------------


def _EarlyDataAttempt(port, credential, tmp_path, until=(None, None)):
  """C{openssl s_client}: a TLS 1.3 session made with C{credential}
  (sending C{GET /first}), then resumed sending C{GET /early} as early data
  and C{GET /after} once the handshake is done (see L{_OpenSslClient} for
  C{until}).  The session's text and the resumption's output."""
  session = str(tmp_path / "session.pem")
  early = tmp_path / "early-request"
  early.write_bytes(b"GET /early HTTP/1.0\r\n\r\n")
  _OpenSslClient(port, credential, b"GET /first HTTP/1.0\r\n\r\n",
                 ["-sess_out", session], until[0])
  text = subprocess.run(["openssl", "sess_id", "-in", session, "-text",
                         "-noout"], stdout=subprocess.PIPE, check=True,
                        timeout=TIMEOUT).stdout.decode("ascii", "replace")
  output = _OpenSslClient(port, credential, b"GET /after HTTP/1.0\r\n\r\n",
                          ["-sess_in", session, "-early_data", str(early)],
                          until[1])
  return (text, output)


def test_early_data_is_not_served(node_server, pki, tmp_path):
  """The servers' session tickets allow no early data (lighttpd 1.4.69
  enables none and has no setting for it; Python's ssl has none): the
  client does not send its early request, and the handler never runs
  it."""
  (session, output) = _EarlyDataAttempt(node_server.port, pki.node,
                                        tmp_path)
  assert "Max Early Data: 0" in session, session
  assert "Reused, TLSv1.3" in output, output
  assert "Early data was accepted" not in output
  assert "200 OK" in output, output
  assert node_server.paths == ["/first", "/after"]


def test_control_the_client_sends_early_data(pki, tmp_path):
  """Against C{openssl s_server} allowing early data, the same client
  sends it and the server accepts it."""
  server = subprocess.Popen(
    ["openssl", "s_server", "-accept", "127.0.0.1:0", "-cert",
     pki.cluster.path, "-key", pki.cluster.path, "-early_data",
     "-max_early_data", "4096", "-naccept", "2"],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  try:
    line = b""
    while not line.startswith(b"ACCEPT"):
      line = server.stdout.readline()
      assert line, "openssl s_server did not start"
    port = int(line.rsplit(b":", 1)[1])
    # s_server keeps a connection open: each client is done once it has
    # its ticket, or the early data's verdict.
    (session, output) = _EarlyDataAttempt(
      port, pki.node, tmp_path,
      until=("Post-Handshake New Session Ticket", "Early data was"))
  finally:
    server.kill()
    server.wait()
    server.stdin.close()
    server.stdout.close()
  assert "Max Early Data: 4096" in session
  assert "Early data was accepted" in output


def test_a_broken_record_mid_request_is_no_server_error(node_server, pki,
                                                         caplog):
  """A client that breaks its TLS stream in the middle of a request (here a
  record that fails its integrity check) leaves a line in the daemon's log,
  not an error with a traceback, and the server goes on serving."""
  caplog.set_level(logging.INFO)
  context = _Context(pki.node.path)
  with socket.create_connection(("127.0.0.1", node_server.port),
                                timeout=TIMEOUT) as raw:
    with context.wrap_socket(raw) as tls:
      tls.sendall(b"GET /broken HTTP/1.1\r\nHost: n\r\n")
      # An application-data record whose integrity check cannot hold.
      os.write(tls.fileno(), b"\x17\x03\x03\x00\x20" + b"\x00" * 32)
      try:
        while tls.recv(4096):
          pass
      except (OSError, ssl.SSLError):
        pass
  assert _Get(node_server.port, context, "/after").status.endswith(b"200 OK")
  assert node_server.paths == ["/after"]
  assert [record.getMessage() for record in caplog.records
          if record.levelno >= logging.ERROR or record.exc_info] == []
