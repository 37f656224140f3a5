"""Ganeti 3.0's own RAPI and node daemon handlers, served by our ganeti.http.

Debian's C{ganeti-3.0} package is fetched and unpacked at test time (see
L{tests.ganeti_package}), its C{ganeti/http} replaced by ours, and
L{tests.ganeti_daemon} serves Ganeti's unmodified
C{ganeti.server.rapi.RemoteApiHandler} and
C{ganeti.server.noded.NodeRequestHandler} in a subprocess, one per daemon
and backend, called the way Ganeti 3.0 calls C{HttpServer}.  Every request
is sent to both backends; each answer (status, content type, body) must be
the expected one and the same on both.
"""

import base64
import hashlib
import http.client
import http.server
import json
import os
import select
import shutil
import signal
import ssl
import subprocess
import sys
import types

import pytest

from ganeti.http import server as http_server
from tests import ganeti_package
from tests.conftest import BACKENDS
from tests.conftest import RunningServer
from tests.new.lighttpd_helpers import WaitFor

DAEMON_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(
  os.path.abspath(__file__))), "ganeti_daemon.py")

#: Seconds a daemon may take to start or to stop.
STARTUP_TIMEOUT = 60
STOP_TIMEOUT = 20

REALM = "Ganeti Remote API"
JSON = "application/json"
HTML = http_server.DEFAULT_ERROR_CONTENT_TYPE

#: Ganeti 3.0's node daemon protocol version.
PROTOCOL_VERSION = 3000000

USERS = {
  # name: (password, scheme, options)
  "alice": ("alice-secret", "{CLEARTEXT}", "write"),
  "bob": ("bob:secret", "{HA1}", "read"),
  "carol": ("carol-secret", "", ""),
}


def _UsersFile():
  lines = ["# RAPI users of the test: name password [options]"]
  for (name, (password, scheme, options)) in sorted(USERS.items()):
    if scheme == "{HA1}":
      stored = scheme + hashlib.md5(("%s:%s:%s" % (name, REALM, password))
                                    .encode("utf-8")).hexdigest()
    else:
      stored = scheme + password
    # Ganeti's users file splits on whitespace: quote nothing, use no spaces.
    assert " " not in stored
    lines.append(" ".join(filter(None, [name, stored, options])))
  return "\n".join(lines) + "\n"


def _Basic(user, password):
  token = base64.b64encode(("%s:%s" % (user, password)).encode("utf-8"))
  return {"Authorization": "Basic " + token.decode("ascii")}


def _JsonBody(value):
  """What Ganeti's C{serializer.DumpJson} makes of a plain JSON value."""
  return (json.dumps(value) + "\n").encode("utf-8")


def _ErrorValues(code, message=None):
  (short_text, long_text) = http.server.BaseHTTPRequestHandler.responses[code]
  return {"code": code, "message": message or short_text, "explain": long_text}


def _JsonError(code, message=None):
  return _JsonBody(_ErrorValues(code, message))


def _HtmlError(code, message=None):
  return (http_server.DEFAULT_ERROR_MESSAGE %
          _ErrorValues(code, message)).encode("utf-8")


# Fixtures ---------------------------------------------------------------


@pytest.fixture(scope="session")
def ganeti_tree(tmp_path_factory):
  """The sys.path entry holding Ganeti 3.0 with our ganeti/http."""
  missing = ganeti_package.MissingModules()
  if "asyncore (Python < 3.12)" in missing:
    pytest.skip("Ganeti 3.0 needs asyncore, gone in Python 3.12")
  if missing:
    pytest.fail("Ganeti 3.0's modules need these Python packages (the test"
                " extra of setup.py installs them): %s" % ", ".join(missing))
  if shutil.which("apt-get") is None and not os.environ.get("GANETI_30_DEB"):
    pytest.skip("no apt-get to fetch Debian's %s" % ganeti_package.PACKAGE)
  try:
    return ganeti_package.GanetiTree(str(tmp_path_factory.mktemp("ganeti")))
  except ganeti_package.Unavailable as err:
    pytest.fail(str(err))


@pytest.fixture(scope="session")
def users_file(tmp_path_factory):
  path = tmp_path_factory.mktemp("rapi") / "users"
  path.write_text(_UsersFile())
  os.chmod(str(path), 0o644)
  return str(path)


@pytest.fixture(scope="module", params=BACKENDS)
def ganeti_backend(request):
  """The backend under test, for daemons living as long as the module."""
  return request.param


class GanetiDaemon(object):
  """L{tests.ganeti_daemon} running in its own process group."""

  def __init__(self, tree, backend, args, log_path):
    self.backend = backend
    self.log_path = log_path
    env = dict(os.environ)
    env.update({
      "PYTHONPATH": tree,
      "GANETI_HTTP_BACKEND": backend,
      "GANETI_HTTP_BACKEND_CONFIG": os.path.join(os.path.dirname(log_path),
                                                 "no-such-file.conf"),
      # Ganeti answers some lists from sets: one hash seed for every daemon
      # makes both backends' bodies byte for byte comparable.
      "PYTHONHASHSEED": "0",
      "PYTHONDONTWRITEBYTECODE": "1",
    })
    with open(log_path, "wb") as log:
      self.process = subprocess.Popen(
        [sys.executable, DAEMON_SCRIPT] + args, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=log, env=env, cwd=tree,
        start_new_session=True)
    try:
      self.info = self._ReadInfo()
    except Exception:
      self.Stop()
      raise
    self.port = self.info["port"]

  def LogTail(self):
    """The end of the daemon's log (its stderr)."""
    with open(self.log_path, "r", errors="replace") as log:
      return log.read()[-8000:]

  def _ReadInfo(self):
    (ready, _, _) = select.select([self.process.stdout], [], [],
                                  STARTUP_TIMEOUT)
    line = self.process.stdout.readline() if ready else b""
    if not line:
      raise RuntimeError("The %s daemon did not start:\n%s" %
                         (self.backend, self.LogTail()))
    return json.loads(line)

  def Stop(self):
    """Close stdin (the daemon then stops); kill what is left after that."""
    try:
      self.process.stdin.close()
    except OSError:
      pass
    try:
      self.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
      pass
    # Whatever the daemon started (lighttpd, FastCGI workers) is in its
    # process group; none of it may outlive the test.
    try:
      os.killpg(self.process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
      pass
    self.process.wait()
    self.process.stdout.close()
    return self.process.returncode

  def Server(self):
    """A L{RunningServer} to send requests with."""
    return RunningServer(
      types.SimpleNamespace(server_address=("127.0.0.1", self.port)),
      "127.0.0.1", True)


def _StartDaemon(tree, backend, tmp_path_factory, name, args):
  log_dir = tmp_path_factory.mktemp("%s-%s" % (name, backend))
  daemon = GanetiDaemon(tree, backend, args, str(log_dir / "daemon.log"))
  assert daemon.info["backend"] == backend
  # The daemon really runs our package inside Ganeti's.
  assert daemon.info["http"] == os.path.join(tree, "ganeti", "http")
  return daemon


def _DaemonFixture(name, args_fn):
  """A module-scoped fixture named C{name} running one daemon per backend."""
  @pytest.fixture(scope="module", name=name.replace("-", "_"))
  def _Fixture(ganeti_tree, ganeti_backend, pki, users_file, tmp_path_factory):
    daemon = _StartDaemon(ganeti_tree, ganeti_backend, tmp_path_factory,
                          name, args_fn(pki, users_file))
    server = daemon.Server()
    server.daemon = daemon
    yield server
    returncode = daemon.Stop()
    assert returncode == 0, daemon.LogTail()
  return _Fixture


_RAPI = _DaemonFixture("rapi", lambda pki, users: [
  "rapi", "--cert", pki.cluster.path, "--users", users])
_RAPI_REQAUTH = _DaemonFixture("rapi-reqauth", lambda pki, users: [
  "rapi", "--cert", pki.cluster.path, "--users", users, "--reqauth"])
_NODED = _DaemonFixture("noded", lambda pki, users: [
  "noded", "--cert", pki.cluster.path, "--node-digest", pki.node.digest])


_ANSWERS = {}


@pytest.fixture
def answer(request, ganeti_backend):
  """C{answer(key, server_answer)}: check it is the same on both backends.

  Returns C{(status, content_type, body)}; once a request has been answered
  by both backends, the two answers must be equal.
  """
  def _Answer(key, server_answer):
    (status, headers, body) = server_answer
    result = (status, headers.get("Content-Type"), body)
    seen = _ANSWERS.setdefault((request.node.originalname, key), {})
    seen[ganeti_backend] = result
    for (other, other_result) in seen.items():
      assert other_result == result, (
        "%s answers %r, %s answers %r" % (other, other_result,
                                          ganeti_backend, result))
    return result
  return _Answer


# RAPI ---------------------------------------------------------------------


@pytest.mark.parametrize(("path", "body"), [
  ("/", _JsonBody(None)),
  ("/version", _JsonBody(2)),
  ("/2", _JsonBody(None)),
], ids=["root", "version", "2"])
def test_rapi_static_resources(rapi, answer, path, body):
  assert answer(path, rapi.Request("GET", path)) == (200, JSON, body)


def test_rapi_features(rapi, answer, ganeti_tree):
  (status, content_type, body) = answer("", rapi.Request("GET",
                                                         "/2/features"))
  assert (status, content_type) == (200, JSON)
  assert sorted(json.loads(body)) == ["instance-create-reqv1",
                                      "instance-reinstall-reqv1",
                                      "node-evac-res1", "node-migrate-reqv1"]
  # Byte for byte what Ganeti's own code serializes (same hash seed).
  assert body == _GanetiEval(
    ganeti_tree,
    "serializer.DumpJson(list(__import__('ganeti.rapi.rlib2')"
    ".rapi.rlib2.ALL_FEATURES))")


@pytest.mark.parametrize("path", ["/no/such/resource", "/3/version",
                                  "/2/features/x?y=1"])
def test_rapi_unknown_path_is_json_404(rapi, answer, path):
  assert answer(path, rapi.Request("GET", path)) == (404, JSON,
                                                     _JsonError(404))


def test_rapi_unsupported_method_is_json_501(rapi, answer):
  assert answer("", rapi.Request("DELETE", "/version")) == (
    501, JSON, _JsonError(501, "Method DELETE is unsupported for path"
                               " /version"))


def test_rapi_write_needs_credentials(rapi, answer):
  (status, headers, body) = rapi.Request("PUT", "/2/redistribute-config")
  assert headers["WWW-Authenticate"] == 'Basic realm="%s"' % REALM
  assert answer("", (status, headers, body)) == (401, JSON, _JsonError(401))


def test_rapi_write_with_good_credentials(rapi, answer):
  result = rapi.Request("PUT", "/2/redistribute-config",
                        headers=_Basic("alice", "alice-secret"))
  # The job reached the (fake) master daemon through Ganeti's resource code.
  assert answer("", result) == (200, JSON, _JsonBody("OP_CLUSTER_REDIST_CONF"))


def test_rapi_write_with_json_body(rapi, answer):
  headers = _Basic("alice", "alice-secret")
  headers["Content-Type"] = JSON
  result = rapi.Request("PUT", "/2/redistribute-config", headers=headers,
                        body=json.dumps({"dry_run": False}))
  assert answer("", result) == (200, JSON, _JsonBody("OP_CLUSTER_REDIST_CONF"))


@pytest.mark.parametrize(("content_type", "body", "status", "message"), [
  ("text/plain", b"{}", 415, None),
  (None, b"{}", 415, None),
  (JSON, b"{not json", 400, "Unable to parse JSON data"),
], ids=["text-plain", "no-content-type", "invalid-json"])
def test_rapi_bad_bodies(rapi, answer, content_type, body, status, message):
  headers = _Basic("alice", "alice-secret")
  if content_type:
    headers["Content-Type"] = content_type
  result = rapi.Request("PUT", "/2/redistribute-config", headers=headers,
                        body=body)
  assert answer((content_type, body), result) == (status, JSON,
                                                  _JsonError(status, message))


@pytest.mark.parametrize(("user", "password"), [
  ("alice", "wrong"),
  ("bob", "bob-secret"),
  ("nobody", "alice-secret"),
  ("alice", ""),
])
def test_rapi_write_with_bad_credentials(rapi, answer, user, password):
  (status, headers, body) = rapi.Request("PUT", "/2/redistribute-config",
                                         headers=_Basic(user, password))
  assert headers["WWW-Authenticate"] == 'Basic realm="%s"' % REALM
  assert answer((user, password), (status, headers, body)) == (
    401, JSON, _JsonError(401))


def test_rapi_write_without_permission_is_403(rapi, answer):
  # bob's {HA1} password is right, but he may only read.
  result = rapi.Request("PUT", "/2/redistribute-config",
                        headers=_Basic("bob", "bob:secret"))
  assert answer("", result) == (403, JSON, _JsonError(403))


def test_rapi_reqauth_without_credentials(rapi_reqauth, answer):
  (status, headers, body) = rapi_reqauth.Request("GET", "/version")
  assert headers["WWW-Authenticate"] == 'Basic realm="%s"' % REALM
  assert answer("", (status, headers, body)) == (401, JSON, _JsonError(401))


@pytest.mark.parametrize("user", sorted(USERS))
def test_rapi_reqauth_good_credentials(rapi_reqauth, answer, user):
  # alice: {CLEARTEXT}, bob: {HA1}, carol: no scheme (cleartext).
  result = rapi_reqauth.Request("GET", "/version",
                                headers=_Basic(user, USERS[user][0]))
  assert answer(user, result) == (200, JSON, _JsonBody(2))


@pytest.mark.parametrize(("user", "password"), [
  ("alice", "Alice secret"),
  ("bob", "bob:secre"),
  ("carol", "carol-secret "),
  ("dave", "carol-secret"),
])
def test_rapi_reqauth_bad_credentials(rapi_reqauth, answer, user, password):
  (status, headers, body) = rapi_reqauth.Request(
    "GET", "/version", headers=_Basic(user, password))
  assert headers["WWW-Authenticate"] == 'Basic realm="%s"' % REALM
  assert answer((user, password), (status, headers, body)) == (
    401, JSON, _JsonError(401))


@pytest.mark.parametrize("authorization", ["Basic", "Digest x=1",
                                           "Basic !!not-base64!!"])
def test_rapi_reqauth_malformed_authorization(rapi_reqauth, answer,
                                              authorization):
  (status, headers, body) = rapi_reqauth.Request(
    "GET", "/version", headers={"Authorization": authorization})
  assert status in (400, 401)
  assert headers["Content-Type"] == JSON
  assert json.loads(body)["code"] == status
  answer(authorization, (status, headers, body))


# Node daemon ----------------------------------------------------------------


def test_noded_version(noded, answer, pki):
  result = noded.Request("POST", "/version", body=b"[]",
                         headers={"Content-Type": JSON},
                         client_cert=pki.node)
  # noded sets no Content-Type on its answers.
  assert answer("", result) == (200, None, _JsonBody([True, PROTOCOL_VERSION]))


def test_noded_version_from_haskell_style_client(noded, answer, pki):
  # luxid and wconfd post with curl's form content type and an empty Expect.
  result = noded.Request(
    "POST", "/version", body=b"[]", client_cert=pki.node,
    headers={"Content-Type": "application/x-www-form-urlencoded"})
  assert answer("", result) == (200, None, _JsonBody([True, PROTOCOL_VERSION]))


def test_noded_reads_a_body_over_10_mib_as_ganeti_30_does(noded, answer,
                                                          pki):
  # Ganeti 3.0 and 3.1 cap no request body; the 10 MiB cap is the
  # development branch's, which this tree is not.
  body = json.dumps(["x" * (11 * 1024 * 1024)]).encode("ascii")
  result = noded.Request("POST", "/version", body=body,
                         headers={"Content-Type": JSON}, client_cert=pki.node)
  assert answer("", result) == (200, None, _JsonBody([True, PROTOCOL_VERSION]))


def test_noded_server_header_is_the_trees_ganeti_version(noded, pki,
                                                         ganeti_tree):
  version = _GanetiEval(ganeti_tree, "__import__('ganeti.constants')"
                        ".constants.RELEASE_VERSION.encode()").decode()
  for (path, status) in [("/version", 200), ("/no_such_procedure", 404)]:
    (got, headers, _) = noded.Request("POST", path, body=b"[]",
                                      client_cert=pki.node)
    assert (got, headers["Server"]) == (status, "Ganeti " + version)


def test_noded_logs_each_request_as_ganeti_30_does(noded, pki):
  connection = noded.Connection(client_cert=pki.node)
  try:
    connection.request("POST", "/version", body=b"[]")
    client_port = connection.sock.getsockname()[1]
    assert connection.getresponse().status == 200
  finally:
    connection.close()
  # legacy logs it before the answer is sent, as Ganeti 3.0; fastcgi
  # reads it from lighttpd's access log, which lighttpd writes every
  # fourth second.
  line = " INFO 127.0.0.1:%d POST /version HTTP/1.1 200\n" % client_port
  WaitFor(lambda: line in noded.daemon.LogTail(), timeout=10)
  assert noded.daemon.LogTail().count(line) == 1


def test_noded_backend_error_is_200_false(noded, answer, pki):
  result = noded.Request("POST", "/version", body=b"{not json",
                         client_cert=pki.node)
  (status, content_type, body) = answer("", result)
  assert (status, content_type) == (200, None)
  (success, message) = json.loads(body)
  assert success is False
  assert message.startswith("Error while executing backend function: ")


@pytest.mark.parametrize("path", ["/no_such_procedure", "/", "/version/x"])
def test_noded_unknown_procedure_is_404(noded, answer, pki, path):
  result = noded.Request("POST", path, body=b"[]", client_cert=pki.node)
  assert answer(path, result) == (404, HTML, _HtmlError(404))


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_noded_only_post_is_served(noded, answer, pki, method):
  result = noded.Request(method, "/version", client_cert=pki.node)
  assert answer(method, result) == (
    400, HTML, _HtmlError(400, "Only the POST method is supported"))


def test_noded_refuses_cluster_cert_by_digest(noded, answer, pki):
  # The cluster certificate chains to the CA but is not the node's: the
  # 3.0-style callback says no.
  result = noded.Request("POST", "/version", body=b"[]",
                         client_cert=pki.cluster)
  (status, content_type, body) = answer("", result)
  assert (status, content_type) == (403, HTML)
  assert body.startswith(b"<html>")


@pytest.mark.parametrize("who", ["foreign", "none"])
def test_noded_refuses_other_clients(noded, pki, who):
  credential = {"foreign": pki.foreign, "none": None}[who]
  try:
    (status, _, _) = noded.Request("POST", "/version", body=b"[]",
                                   client_cert=credential)
  except (ssl.SSLError, ConnectionError, http.client.HTTPException):
    return  # refused during or right after the TLS handshake (not a hang)
  assert status == 403


def test_noded_through_ganeti_rpc_client(noded, pki):
  # Our pycurl client, configured the way Ganeti's RPC layer does it.
  client = pytest.importorskip("ganeti.http.client")
  import pycurl  # pylint: disable=import-outside-toplevel

  def _ConfigCurl(curl):
    curl.setopt(pycurl.FOLLOWLOCATION, False)
    curl.setopt(pycurl.CAINFO, pki.cluster.path)
    curl.setopt(pycurl.SSL_VERIFYHOST, 0)
    curl.setopt(pycurl.SSL_VERIFYPEER, True)
    curl.setopt(pycurl.SSLCERTTYPE, "PEM")
    curl.setopt(pycurl.SSLCERT, pki.node.path)
    curl.setopt(pycurl.SSLKEYTYPE, "PEM")
    curl.setopt(pycurl.SSLKEY, pki.node.path)
    curl.setopt(pycurl.CONNECTTIMEOUT, 5)

  requests = [
    client.HttpClientRequest("127.0.0.1", noded.port, "POST", "/version",
                             headers=["Content-type: application/json",
                                      "Expect:"],
                             post_data="[]", read_timeout=30,
                             curl_config_fn=_ConfigCurl)
    for _ in range(5)]
  client.ProcessRequests(requests)
  for req in requests:
    assert req.success, req.error
    assert req.resp_status_code == 200
    assert json.loads(req.resp_body) == [True, PROTOCOL_VERSION]


# Ganeti 3.0's RAPI test helper: each call of its client goes through
# server.HttpResponder and the real RAPI handler, in process.
_INPUT_TEST_CLIENT = """
import json
from ganeti.rapi import testutils

client = testutils.InputTestClient()
answers = {
  "version": client.GetVersion(),
  "features": sorted(client.GetFeatures()),
  # Valid, up to the LUXI call the helper stops at.
  "instance": client.GetInstance("inst1.example.com") is NotImplemented,
}
for (name, call) in [
    ("unknown job", lambda: client.GetJobStatus(None)),
    ("bad parameter", lambda: client.ModifyInstance("inst1", foo=1))]:
  try:
    call()
    answers[name] = "accepted"
  except testutils.VerificationError as err:
    answers[name] = str(err)
print(json.dumps(answers))
"""


def test_rapi_input_test_client_of_ganeti_30(ganeti_tree):
  """C{ganeti.rapi.testutils.InputTestClient}, which RAPI client authors
  use to check their calls, runs on our C{server.HttpResponder}."""
  env = dict(os.environ, PYTHONPATH=ganeti_tree, PYTHONDONTWRITEBYTECODE="1")
  result = subprocess.run([sys.executable, "-c", _INPUT_TEST_CLIENT],
                          env=env, cwd=ganeti_tree, capture_output=True,
                          text=True, timeout=STARTUP_TIMEOUT)
  assert result.returncode == 0, result.stderr
  answers = json.loads(result.stdout)
  assert answers["version"] == 2
  assert "instance-create-reqv1" in answers["features"]
  assert answers["instance"] is True
  assert answers["unknown job"].startswith(
    "Unhandled Ganeti error: 404 Not Found")
  assert answers["bad parameter"].startswith(
    "Unhandled Ganeti error: 400")
  assert "doesn&#x27;t support the parameter &#x27;foo&#x27;" in (
    answers["bad parameter"])


# Helpers ----------------------------------------------------------------------


def _GanetiEval(tree, expression):
  """Evaluate C{expression} (bytes) in Ganeti 3.0, as the daemons run it."""
  code = ("import sys\n"
          "from ganeti import serializer\n"
          "sys.stdout.buffer.write(%s)\n" % expression)
  env = dict(os.environ, PYTHONPATH=tree, PYTHONHASHSEED="0",
             PYTHONDONTWRITEBYTECODE="1")
  return subprocess.run([sys.executable, "-c", code], env=env, cwd=tree,
                        stdout=subprocess.PIPE, check=True,
                        timeout=STARTUP_TIMEOUT).stdout
