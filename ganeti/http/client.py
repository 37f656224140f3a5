"""Ganeti's HTTPS client: many requests at once over pycurl's multi interface.

Build L{HttpClientRequest} objects and hand them to L{ProcessRequests}, which
returns once every request has finished and filled in its result attributes.
Certificates and other TLS settings are up to each request's
C{curl_config_fn}.
"""

import functools
import ipaddress
import logging
import math
import threading

import pycurl

from ganeti import http
from ganeti.http import client_bodies
from ganeti.http import client_connections
from ganeti.http import client_expect
from ganeti.http import client_monitor
from ganeti.http import feedback


def _MaxTotalConnections():
  """Return Ganeti's cap on concurrent RPC connections: its constant (3.2),
  None where Ganeti's constants have none (3.0 and 3.1 set no cap), 30
  without Ganeti (3.2's value)."""
  try:
    from ganeti import constants  # pylint: disable=import-outside-toplevel
  except ImportError:
    return 30
  return getattr(constants, "RPC_MAX_CONCURRENT_CONNECTIONS", None)


# libcurl queues requests beyond this many open connections
_MAX_TOTAL_CONNECTIONS = _MaxTotalConnections()


def _IsIPv6Address(host):
  try:
    return ipaddress.ip_address(host).version == 6
  except ValueError:
    return False


class HttpClientRequest(object):
  """One HTTPS request and, once processed, its outcome.

  @ivar success: None until processed, then whether the transfer worked
    (an HTTP error status still counts as success: check C{resp_status_code})
  @ivar error: None, or the error message of a failed transfer
  @ivar resp_status_code: the HTTP status, or None before processing
  @ivar resp_body: the response body as str, or None before processing;
    always None with C{response_file}.  For a feedback stream it is the
    final result's JSON text, as a server without streaming would have sent
    it (see L{feedback.ResultBody})
  """

  def __init__(self, host, port, method, path, headers=None, post_data=None,
               read_timeout=None, curl_config_fn=None, nicename=None,
               completion_cb=None, feedback_fn=None, response_file=None):
    """Describe a request.

    @param host: host name or IP address
    @param port: TCP port
    @param method: HTTP method, sent as is
    @param path: request path, starting with C{/}
    @type headers: list of str, dict or None
    @param headers: extra headers as C{"Name: value"} strings (a dict of names
      to values is accepted too)
    @type post_data: str, bytes, a binary file object or None
    @param post_data: request body.  A seekable file object is sent from its
      position when this request is made to its end, read in pieces as it
      goes out, with that size as C{Content-Length}; several requests may
      share one file; it must stay open until they have finished
    @param read_timeout: seconds the whole transfer may take (None: no limit)
    @param curl_config_fn: called with the C{pycurl.Curl} object before the
      transfer starts, e.g. to set certificates
    @param nicename: short name shown by the lock monitor instead of host and
      path (no whitespace)
    @param completion_cb: called with this request once it has finished
    @param feedback_fn: asks the server for a feedback stream (see
      C{docs/feedback.md}); if it sends one, called with each feedback
      message as it arrives, from inside L{ProcessRequests}.  An exception
      it raises aborts this request's transfer and becomes its C{error}.
      A response that is not a feedback stream is read as without it
    @param response_file: a writable binary file object: the response body,
      whatever the status, is written there as it arrives instead of into
      C{resp_body}; not together with C{feedback_fn}
    """
    assert path.startswith("/"), "Path must start with slash (/)"
    assert curl_config_fn is None or callable(curl_config_fn)
    assert completion_cb is None or callable(completion_cb)
    assert feedback_fn is None or callable(feedback_fn)
    assert response_file is None or \
      callable(getattr(response_file, "write", None))
    assert feedback_fn is None or response_file is None, \
      "A feedback stream's result goes to resp_body, not to a response file"
    assert not hasattr(post_data, "read") or post_data.seekable(), \
      "A request body file must be seekable: Content-Length needs its size"

    self.host = host
    self.port = port
    self.method = method
    self.path = path
    self.read_timeout = read_timeout
    self.curl_config_fn = curl_config_fn
    self.nicename = nicename
    self.completion_cb = completion_cb
    self.feedback_fn = feedback_fn
    self.response_file = response_file

    if post_data is None:
      post_data = ""
    self.post_data = post_data
    # Where a file body starts: its position now, whatever reads the file
    # afterwards (other requests sending it too).
    self.post_data_start = (post_data.tell() if hasattr(post_data, "read")
                            else None)

    if headers is None:
      headers = []
    elif isinstance(headers, dict):
      headers = ["%s: %s" % item for item in headers.items()]
    self.headers = headers

    self.success = None
    self.error = None
    self.resp_status_code = None
    self.resp_body = None

  def __repr__(self):
    cls = type(self)
    return "<%s.%s %s:%s %s %s at %#x>" % (cls.__module__, cls.__name__,
                                          self.host, self.port, self.method,
                                          self.path, id(self))

  @property
  def url(self):
    """The request's URL; always https, IPv6 addresses in brackets."""
    if _IsIPv6Address(self.host):
      address = "[%s]:%s" % (self.host, self.port)
    else:
      address = "%s:%s" % (self.host, self.port)
    return "https://%s%s" % (address, self.path)


def _RequestHeaders(req):
  """The header lines to send: C{req.headers}, asking for a feedback
  stream when the request takes feedback (added to its Accept header)."""
  if req.feedback_fn is None:
    return req.headers
  headers = []
  accept = [feedback.FEEDBACK_CONTENT_TYPE]
  for line in req.headers:
    (name, sep, value) = line.partition(":")
    if sep and name.strip().lower() == "accept":
      accept.append(value.strip())
    else:
      headers.append(line)
  headers.append("Accept: %s" % ", ".join(accept))
  return headers


def _StartRequest(curl, req, config_target=None, guard_resend=False):
  """Configure C{curl} for C{req}.

  @param config_target: what C{req.curl_config_fn} gets instead of C{curl}
    (an L{client_connections.OptionRecorder} of it)
  @param guard_resend: see L{client_bodies.SetRequestBody}; such a request also waits
    for "100 Continue" where L{client_expect} says so, and its response
    tells L{client_expect} whether the server keeps connections
  @rtype: L{_PendingRequest}
  """
  logging.debug("Starting request %r", req)

  curl.setopt(pycurl.VERBOSE, False)
  curl.setopt(pycurl.NOSIGNAL, True)
  curl.setopt(pycurl.USERAGENT, http.HTTP_GANETI_VERSION)
  curl.setopt(pycurl.PROXY, "")
  curl.setopt(pycurl.CUSTOMREQUEST, req.method)
  curl.setopt(pycurl.URL, req.url)
  upload = client_bodies.SetRequestBody(curl, req, guard_resend)
  headers = _RequestHeaders(req)
  if guard_resend and upload is not None and \
      client_expect.WaitsForContinue(req.method, upload.size,
                                     (req.host, req.port)):
    headers = client_expect.AskToContinue(curl, headers)
  curl.setopt(pycurl.HTTPHEADER, headers)
  if req.read_timeout is None:
    curl.setopt(pycurl.TIMEOUT, 0)
  elif req.read_timeout == int(req.read_timeout):
    curl.setopt(pycurl.TIMEOUT, int(req.read_timeout))
  else:
    # TIMEOUT takes whole seconds, and 0 is no limit: int(0.5) would be.
    curl.setopt(pycurl.TIMEOUT_MS,
                max(1, int(math.ceil(req.read_timeout * 1000))))
  # Each request gets a fresh handshake
  if hasattr(pycurl, "SSL_SESSIONID_CACHE"):
    curl.setopt(pycurl.SSL_SESSIONID_CACHE, False)
  body = client_bodies.ResponseBody(req)
  curl.setopt(pycurl.WRITEFUNCTION, body.Write)
  # What the server said of the connection, for the next requests there
  head = client_expect.ResponseHead() if guard_resend else None
  readers = [reader for reader in
             (head and head.Line, req.feedback_fn and body.Header) if reader]
  if readers:
    curl.setopt(pycurl.HEADERFUNCTION,
                functools.partial(_PassHeaderLine, readers))

  if req.curl_config_fn:
    req.curl_config_fn(config_target or curl)

  return _PendingRequest(curl, req, body, upload, head)


def _PassHeaderLine(readers, line):
  """curl's HEADERFUNCTION: give C{line} to each of C{readers}."""
  for reader in readers:
    reader(line)


class _PendingRequest(object):
  """A request whose curl handle is configured and not yet finished."""

  def __init__(self, curl, req, body, upload=None, head=None):
    """Wrap a configured handle.

    @param body: the request's C{*Body} object (its C{Finish} gives the
      outcome)
    @param upload: the L{client_bodies.UploadBody} of a file body, or None
    @param head: the L{client_expect.ResponseHead} following the
      response's header lines, or None
    """
    assert req.success is None

    self._curl = curl
    self._req = req
    self._body = body
    self._upload = upload
    self._head = head

  def GetCurlHandle(self):
    """Return the C{pycurl.Curl} object."""
    return self._curl

  def GetCurrentRequest(self):
    """Return the L{HttpClientRequest}."""
    return self._req

  def Done(self, errmsg):
    """Store the outcome in the request and call its completion callback.

    @type errmsg: str or None
    @param errmsg: why the transfer failed, or None if it worked
    """
    curl = self._curl
    req = self._req

    assert req.success is None, "Request has already been finalized"

    try:
      source = "from %s:%s " % (curl.getinfo(pycurl.LOCAL_IP),
                                curl.getinfo(pycurl.LOCAL_PORT))
    except (AttributeError, pycurl.error):
      source = ""
    logging.debug("Request %s%s finished, errmsg=%s", source, req, errmsg)

    if self._upload is not None:
      errmsg = self._upload.error or errmsg
    (error, body) = self._body.Finish(errmsg)
    if self._head is not None and not error:
      client_expect.Servers().Learn(
        (req.host, req.port), self._head,
        curl.getinfo(pycurl.NUM_CONNECTS) > 0)
    req.success = not error
    req.error = error
    req.resp_status_code = curl.getinfo(pycurl.RESPONSE_CODE)
    req.resp_body = body

    self._Release()

    if req.completion_cb:
      req.completion_cb(req)

  def _Release(self):
    """Let go of the request body, the response buffer and callbacks."""
    curl = self._curl
    curl.setopt(pycurl.POSTFIELDS, "")
    curl.setopt(pycurl.WRITEFUNCTION, lambda _: None)
    if self._upload is not None:
      curl.setopt(pycurl.READFUNCTION, lambda _: b"")
      curl.setopt(pycurl.SEEKFUNCTION, lambda *_: pycurl.SEEKFUNC_CANTSEEK)
    if self._head is not None or self._req.feedback_fn is not None:
      curl.setopt(pycurl.HEADERFUNCTION, lambda _: None)
    self._body = self._upload = self._head = None


def _ProcessCurlRequests(multi, requests):
  """Run curl handles to completion on C{multi}.

  Yields C{(curl, None)} for each handle that finished and
  C{(curl, "Error <number>: <message>")} for each that failed, removing it
  from C{multi} first.
  """
  for curl in requests:
    multi.add_handle(curl)

  while True:
    ret, active = multi.perform()
    assert ret in (pycurl.E_MULTI_OK, pycurl.E_CALL_MULTI_PERFORM)
    if ret == pycurl.E_CALL_MULTI_PERFORM:
      continue

    while True:
      remaining, succeeded, failed = multi.info_read()
      for curl in succeeded:
        multi.remove_handle(curl)
        yield (curl, None)
      for curl, errnum, errmsg in failed:
        multi.remove_handle(curl)
        yield (curl, "Error %s: %s" % (errnum, errmsg))
      if remaining == 0:
        break

    if active == 0:
      break

    # Short waits, because curl checks timeouts only in perform()
    multi.select(1.0)


def _NewMulti(curl_multi):
  """A multi handle with Ganeti's cap on connections."""
  multi = curl_multi()
  try:
    if _MAX_TOTAL_CONNECTIONS is not None:
      multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, _MAX_TOTAL_CONNECTIONS)
  except (pycurl.error, AttributeError):
    pass  # an old libcurl or pycurl: no cap
  return multi


def _StartRequests(requests, curl_factory, record_options):
  """Configure a curl handle for each request.

  @return: C{(pending, identities)}: the L{_PendingRequest} of each handle,
    and the set of the requests' L{client_connections.TlsIdentity} (empty
    unless C{record_options})
  """
  pending = {}
  identities = set()
  for req in requests:
    curl = curl_factory()
    if record_options:
      recorder = client_connections.OptionRecorder(curl)
      pending[curl] = _StartRequest(curl, req, config_target=recorder,
                                    guard_resend=True)
      identities.add(client_connections.TlsIdentity(recorder.options))
    else:
      pending[curl] = _StartRequest(curl, req)
  return (pending, identities)


def ProcessRequests(requests, lock_monitor_cb=None, _curl=pycurl.Curl,
                    _curl_multi=pycurl.CurlMulti,
                    _curl_process=_ProcessCurlRequests):
  """Run C{requests} concurrently and wait until all have finished.

  Results are stored in the request objects; nothing is returned.
  Connections stay open for later calls (see L{client_connections}) when
  all requests have the same TLS settings.

  @type requests: list of L{HttpClientRequest}
  @param requests: requests not processed before
  @param lock_monitor_cb: if given, called with a monitor object whose
    C{GetLockInfo} lists the requests still pending
  """
  assert all(req.success is None and req.error is None and
             req.resp_status_code is None and req.resp_body is None
             for req in requests)

  # Replaced curl classes are tests' fakes: they get the plain behaviour
  reuse = (_curl is pycurl.Curl and _curl_multi is pycurl.CurlMulti and
           client_connections.KeepAliveEnabled())
  (pending, identities) = _StartRequests(requests, _curl, reuse)
  assert len(pending) == len(requests)

  if lock_monitor_cb:
    monitor = client_monitor.PendingRequestMonitor(
      threading.current_thread(), pending.values)
    lock_monitor_cb(monitor)
  else:
    monitor = client_monitor.NoOpRequestMonitor

  if reuse and len(identities) == 1 and None not in identities:
    pool = client_connections.Pool()
    lease = pool.Checkout(identities.pop(), lambda: _NewMulti(_curl_multi))
    multi = lease.multi
    for curl in pending:
      lease.PrepareTransfer(curl)
  else:
    lease = None
    multi = _NewMulti(_curl_multi)

  try:
    for curl, errmsg in _curl_process(multi, list(pending)):
      monitor.acquire(shared=0)
      try:
        pending.pop(curl).Done(errmsg)
      finally:
        monitor.release()
  except BaseException:
    if lease is not None:
      multi.close()  # in an unknown state: not for reuse
    raise
  if lease is not None:
    pool.Checkin(lease)

  assert not pending, "Not all requests were processed"
  monitor.Disable()

  assert all(req.error is not None or
             (req.success and req.resp_status_code is not None and
              (req.resp_body is not None or req.response_file is not None))
             for req in requests)
