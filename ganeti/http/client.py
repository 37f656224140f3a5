"""Ganeti's HTTPS client: many requests at once over pycurl's multi interface.

Build L{HttpClientRequest} objects and hand them to L{ProcessRequests}, which
returns once every request has finished and filled in its result attributes.
Certificates and other TLS settings are up to each request's
C{curl_config_fn}.
"""

import ipaddress
import logging
import math
import os
import threading
from io import BytesIO

import pycurl

from ganeti import http
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


# A write callback returning another count than it was given aborts the
# transfer (curl then reports CURLE_WRITE_ERROR)
_WRITE_ABORT = 0


class _BufferedBody(object):
  """Collects the response body in memory, for C{resp_body}."""

  def __init__(self):
    self._buffer = BytesIO()
    self.Write = self._buffer.write

  def Finish(self, errmsg):
    """Return C{(error, resp_body)} once the transfer has ended (bytes that
    are not UTF-8 become U+FFFD rather than failing every request of the
    L{ProcessRequests} call)."""
    return (errmsg, self._buffer.getvalue().decode("utf-8", "replace"))


class _FileBody(object):
  """Writes the response body to the request's C{response_file}."""

  def __init__(self, fileobj):
    self._file = fileobj
    self._error = None

  def Write(self, data):
    """curl's WRITEFUNCTION."""
    try:
      self._file.write(data)
    except Exception as err:  # pylint: disable=broad-except
      self._error = "Writing the response body failed: %s" % err
      return _WRITE_ABORT
    return None

  def Finish(self, errmsg):
    """Return C{(error, resp_body)}; the body is in the file, so None."""
    return (self._error or errmsg, None)


class _FeedbackFnError(Exception):
  """The caller's feedback function raised (described in the message)."""


class _FeedbackBody(object):
  """Decodes a feedback stream as it arrives, or buffers any other body.

  The response's C{Content-Type}, seen by L{Header}, tells which it is.
  """

  def __init__(self, feedback_fn):
    self._feedback_fn = feedback_fn
    self._content_type = None
    self._decoder = None
    self._plain = _BufferedBody()
    self._error = None

  def Header(self, line):
    """curl's HEADERFUNCTION: remember the final response's Content-Type."""
    line = line.decode("iso-8859-1")
    if line.startswith("HTTP/"):
      # A new response (after "100 Continue", say): forget the last one's
      self._content_type = None
      return
    (name, sep, value) = line.partition(":")
    if sep and name.strip().lower() == "content-type":
      self._content_type = value.strip()

  def _Decoder(self):
    """The stream's decoder, or None while the body is not a stream."""
    if self._decoder is None and \
        feedback.IsFeedbackContentType(self._content_type):
      self._decoder = feedback.FeedbackDecoder()
    return self._decoder

  def Write(self, data):
    """curl's WRITEFUNCTION: pass on each complete feedback message."""
    if self._error is not None:
      return _WRITE_ABORT
    decoder = self._Decoder()
    if decoder is None:
      return self._plain.Write(data)
    try:
      frames = decoder.feed(data)
    except feedback.FeedbackProtocolError as err:
      (frames, self._error) = (err.events, str(err))
    try:
      self._Deliver(frames)
    except _FeedbackFnError as err:
      # It came first in the stream, before any protocol error
      self._error = str(err)
    if self._error is not None:
      return _WRITE_ABORT
    return None

  def _Deliver(self, frames):
    for frame in frames:
      if frame.kind == feedback.FRAME_FEEDBACK:
        try:
          self._feedback_fn(frame.value)
        except Exception as err:  # pylint: disable=broad-except
          logging.exception("Feedback function failed")
          raise _FeedbackFnError("Feedback function failed: %s: %s" %
                                 (type(err).__name__, err))

  def Finish(self, errmsg):
    """Return C{(error, resp_body)} once the transfer has ended."""
    decoder = self._Decoder()
    if decoder is None:
      return self._plain.Finish(errmsg)
    if self._error is not None:
      return (self._error, "")
    if errmsg and decoder.final is None:
      return (errmsg, "")
    # The frames decide: a transport error after the final frame (a missing
    # last chunk, say) does not undo a complete stream.
    try:
      return (None, feedback.ResultBody(decoder.finish()))
    except feedback.FeedbackProtocolError as err:
      return (str(err), "")
    except feedback.FeedbackRemoteError as err:
      return ("Remote method failed: %s" % err.message, "")


class _UploadBody(object):
  """Feeds a request body file to curl's READFUNCTION and SEEKFUNCTION.

  Each request reads at its own offset, so several requests may send the
  same file (Ganeti sends one body to many nodes) and curl may rewind
  (to retry on a fresh connection, say).

  @ivar size: bytes from C{start} to the file's end
  @ivar error: why reading failed, or None
  """

  def __init__(self, fileobj, start):
    self._file = fileobj
    self._start = start
    self.size = max(0, fileobj.seek(0, os.SEEK_END) - start)
    self._sent = 0
    self.error = None

  def Read(self, size):
    """curl's READFUNCTION."""
    try:
      self._file.seek(self._start + self._sent)
      data = self._file.read(min(size, self.size - self._sent))
    except Exception as err:  # pylint: disable=broad-except
      self.error = "Reading the request body failed: %s" % err
      return pycurl.READFUNC_ABORT
    self._sent += len(data)
    return data

  def Seek(self, offset, origin):
    """curl's SEEKFUNCTION: go back to C{offset} of the body."""
    if origin != os.SEEK_SET or not 0 <= offset <= self.size:
      return pycurl.SEEKFUNC_CANTSEEK
    self._sent = offset
    return pycurl.SEEKFUNC_OK


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


def _SetRequestBody(curl, req):
  """Set C{req.post_data} as the body; return an L{_UploadBody} or None.

  Like str and bytes bodies, a file goes out as a POST body (whatever
  C{CUSTOMREQUEST} says), so the server sees the same headers either way.
  """
  if not hasattr(req.post_data, "read"):
    curl.setopt(pycurl.POSTFIELDS, req.post_data)
    return None
  upload = _UploadBody(req.post_data, req.post_data_start)
  curl.setopt(pycurl.POST, True)
  curl.setopt(pycurl.POSTFIELDSIZE_LARGE, upload.size)
  curl.setopt(pycurl.READFUNCTION, upload.Read)
  curl.setopt(pycurl.SEEKFUNCTION, upload.Seek)
  return upload


def _ResponseBody(req):
  """Where the response body of C{req} goes, as a C{*Body} object."""
  if req.response_file is not None:
    return _FileBody(req.response_file)
  if req.feedback_fn is not None:
    return _FeedbackBody(req.feedback_fn)
  return _BufferedBody()


def _StartRequest(curl, req):
  """Configure C{curl} for C{req}.

  @rtype: L{_PendingRequest}
  """
  logging.debug("Starting request %r", req)

  curl.setopt(pycurl.VERBOSE, False)
  curl.setopt(pycurl.NOSIGNAL, True)
  curl.setopt(pycurl.USERAGENT, http.HTTP_GANETI_VERSION)
  curl.setopt(pycurl.PROXY, "")
  curl.setopt(pycurl.CUSTOMREQUEST, req.method)
  curl.setopt(pycurl.URL, req.url)
  upload = _SetRequestBody(curl, req)
  curl.setopt(pycurl.HTTPHEADER, _RequestHeaders(req))
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
  body = _ResponseBody(req)
  curl.setopt(pycurl.WRITEFUNCTION, body.Write)
  if req.feedback_fn is not None:
    curl.setopt(pycurl.HEADERFUNCTION, body.Header)

  if req.curl_config_fn:
    req.curl_config_fn(curl)

  return _PendingRequest(curl, req, body, upload)


class _PendingRequest(object):
  """A request whose curl handle is configured and not yet finished."""

  def __init__(self, curl, req, body, upload=None):
    """Wrap a configured handle.

    @param body: the request's C{*Body} object (its C{Finish} gives the
      outcome)
    @param upload: the L{_UploadBody} of a file body, or None
    """
    assert req.success is None

    self._curl = curl
    self._req = req
    self._body = body
    self._upload = upload

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
    if self._req.feedback_fn is not None:
      curl.setopt(pycurl.HEADERFUNCTION, lambda _: None)
    self._body = self._upload = None


class _SharedLock(object):
  """A lock owned either by one thread exclusively or by many sharers.

  Not reentrant.  Waiting exclusive acquirers keep new sharers out.
  """

  def __init__(self):
    self._cond = threading.Condition(threading.Lock())
    self._exclusive_owner = None
    self._sharers = set()
    self._exclusive_waiting = 0

  def _IsFree(self):
    return self._exclusive_owner is None and not self._sharers

  def _CanShare(self):
    return self._exclusive_owner is None and not self._exclusive_waiting

  def acquire(self, shared=0):
    """Acquire the lock, shared if C{shared} is true, else exclusively."""
    me = threading.current_thread()
    with self._cond:
      assert self._exclusive_owner is not me and me not in self._sharers, \
        "Lock is already held by this thread"
      if shared:
        self._cond.wait_for(self._CanShare)
        self._sharers.add(me)
      else:
        self._exclusive_waiting += 1
        try:
          self._cond.wait_for(self._IsFree)
        finally:
          # Sharers held back by this waiter may go on if it gave up
          self._exclusive_waiting -= 1
          self._cond.notify_all()
        self._exclusive_owner = me
    return True

  def release(self):
    """Release the lock held by the current thread in either mode."""
    me = threading.current_thread()
    with self._cond:
      if self._exclusive_owner is me:
        self._exclusive_owner = None
      else:
        assert me in self._sharers, "Cannot release a lock not held"
        self._sharers.remove(me)
      self._cond.notify_all()

  def is_owned(self, shared=-1):
    """Tell whether the current thread holds the lock.

    @param shared: negative for either mode, 0 for exclusive, positive for
      shared
    """
    me = threading.current_thread()
    with self._cond:
      if shared < 0:
        return self._exclusive_owner is me or me in self._sharers
      if shared == 0:
        return self._exclusive_owner is me
      return me in self._sharers


class _NoOpRequestMonitor(object):
  """Stands in for L{_PendingRequestMonitor} when nobody watches."""

  @staticmethod
  def acquire(*_args, **_kwargs):
    pass

  release = acquire
  Disable = acquire


class _PendingRequestMonitor(object):
  """Shows a thread's unfinished requests to Ganeti's lock monitor.

  The lock monitor calls L{GetLockInfo} from its own thread, so finishing a
  request happens under this object's lock in exclusive mode.
  """

  def __init__(self, owner, pending_fn):
    """Set up the monitor.

    @type owner: threading.Thread
    @param owner: thread processing the requests
    @param pending_fn: returns the L{_PendingRequest} objects not yet done
    """
    self._owner = owner
    self._pending_fn = pending_fn
    self._lock = _SharedLock()
    self.acquire = self._lock.acquire
    self.release = self._lock.release

  def Disable(self):
    """Stop reporting requests; called once all are done."""
    self._lock.acquire(shared=0)
    try:
      self._pending_fn = None
    finally:
      self._lock.release()

  def GetLockInfo(self, requested):  # pylint: disable=unused-argument
    """Describe the pending requests as lock monitor entries.

    @param requested: the fields asked for (ignored; all are given)
    @return: list of C{(name, None, [owner thread name], None)}, with names
      C{rpc/<nicename>} or C{rpc/<host><path>}
    """
    self._lock.acquire(shared=1)
    try:
      if not self._pending_fn:
        return []
      owner_name = self._owner.name
      result = []
      for pending in self._pending_fn():
        req = pending.GetCurrentRequest()
        if req.nicename is None:
          name = "%s%s" % (req.host, req.path)
        else:
          name = req.nicename
        result.append(("rpc/%s" % name, None, [owner_name], None))
      return result
    finally:
      self._lock.release()


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


def ProcessRequests(requests, lock_monitor_cb=None, _curl=pycurl.Curl,
                    _curl_multi=pycurl.CurlMulti,
                    _curl_process=_ProcessCurlRequests):
  """Run C{requests} concurrently and wait until all have finished.

  Results are stored in the request objects; nothing is returned.

  @type requests: list of L{HttpClientRequest}
  @param requests: requests not processed before
  @param lock_monitor_cb: if given, called with a monitor object whose
    C{GetLockInfo} lists the requests still pending
  """
  assert all(req.success is None and req.error is None and
             req.resp_status_code is None and req.resp_body is None
             for req in requests)

  pending = {}
  for req in requests:
    client = _StartRequest(_curl(), req)
    pending[client.GetCurlHandle()] = client
  assert len(pending) == len(requests)

  if lock_monitor_cb:
    monitor = _PendingRequestMonitor(threading.current_thread(),
                                     pending.values)
    lock_monitor_cb(monitor)
  else:
    monitor = _NoOpRequestMonitor

  multi = _curl_multi()
  try:
    if _MAX_TOTAL_CONNECTIONS is not None:
      multi.setopt(pycurl.M_MAX_TOTAL_CONNECTIONS, _MAX_TOTAL_CONNECTIONS)
  except (pycurl.error, AttributeError):
    pass  # an old libcurl or pycurl: no cap

  for curl, errmsg in _curl_process(multi, list(pending)):
    monitor.acquire(shared=0)
    try:
      pending.pop(curl).Done(errmsg)
    finally:
      monitor.release()

  assert not pending, "Not all requests were processed"
  monitor.Disable()

  assert all(req.error is not None or
             (req.success and req.resp_status_code is not None and
              (req.resp_body is not None or req.response_file is not None))
             for req in requests)
