"""HTTP Basic authentication for Ganeti's HTTP servers (RFC 2617).

Server handlers mix in L{HttpServerRequestAuthentication} and override
C{Authenticate} (and usually C{AuthenticationRequired}); RAPI's users file is
read with L{ParsePasswordFile}.  Digest authentication is recognised as a
scheme name but never accepted, as in Ganeti.
"""

import base64
import binascii
import hashlib
import hmac
import logging
import re

from ganeti import http

HTTP_BASIC_AUTH = "Basic"
HTTP_DIGEST_AUTH = "Digest"

# Parameter values made only of these characters go out unquoted.  This is a
# subset of RFC 2616's "token", which is all a realm ever needs.
_TOKEN_RE = re.compile(r"^[-_a-z0-9]+$", re.I)


def _FormatAuthHeader(scheme, params):
  """Build a challenge such as C{Basic realm="Ganeti Remote API"}.

  @type scheme: str
  @param scheme: authentication scheme, e.g. L{HTTP_BASIC_AUTH}
  @type params: dict
  @param params: parameter names and values, written in dict order
  @rtype: str
  """
  pieces = [scheme]
  for name, value in params.items():
    if not _TOKEN_RE.match(value):
      value = "\"%s\"" % value.replace("\"", "\\\"")
    pieces.append("%s=%s" % (name, value))
  return " ".join(pieces)


class HttpServerRequestAuthentication(object):
  """Mixin adding Basic authentication to an HTTP server handler.

  C{PreHandleRequest} checks the request's C{Authorization} header whenever
  L{AuthenticationRequired} says so or the client sent credentials anyway,
  and raises L{http.HttpUnauthorized} (with a C{WWW-Authenticate} challenge)
  when they are missing or rejected.  Subclasses must implement
  L{Authenticate}; L{VerifyBasicAuthPassword} helps compare a password with
  an entry of a users file.
  """

  AUTH_REALM = "Unspecified"

  # Prefixes of the stored passwords accepted by VerifyBasicAuthPassword
  _CLEARTEXT_SCHEME = "{CLEARTEXT}"
  _HA1_SCHEME = "{HA1}"

  def GetAuthRealm(self, req):  # pylint: disable=unused-argument
    """Return the realm for C{req}; override to vary it per request."""
    return self.AUTH_REALM

  def AuthenticationRequired(self, req):  # pylint: disable=unused-argument
    """Tell whether C{req} needs credentials; override to return True."""
    return False

  def PreHandleRequest(self, req):
    """Authenticate C{req} before the handler runs.

    @raise http.HttpUnauthorized: credentials are needed or were given, and
      they are missing or wrong
    @raise http.HttpBadRequest: the Basic scheme came without credentials
    @raise AssertionError: the realm is empty
    """
    headers = req.request_headers
    sent_credentials = bool(headers) and http.HTTP_AUTHORIZATION in headers
    if not (self.AuthenticationRequired(req) or sent_credentials):
      return

    realm = self.GetAuthRealm(req)
    if not realm:
      raise AssertionError("No authentication realm")

    if self._CheckAuthorization(req):
      return

    challenge = _FormatAuthHeader(HTTP_BASIC_AUTH, {"realm": realm})
    raise http.HttpUnauthorized(
      headers={http.HTTP_WWW_AUTHENTICATE: challenge})

  def _CheckAuthorization(self, req):
    """Tell whether the C{Authorization} header of C{req} is acceptable."""
    headers = req.request_headers
    credentials = headers.get(http.HTTP_AUTHORIZATION) if headers else None
    if not credentials:
      return False

    parts = credentials.strip().split(None, 2)
    if not parts:
      return False

    # Scheme names are case-insensitive (RFC 2617, section 1.2)
    if parts[0].lower() == HTTP_BASIC_AUTH.lower():
      if len(parts) < 2:
        raise http.HttpBadRequest(
          message="Basic authentication requires credentials")
      return self._CheckBasicAuthorization(req, parts[1])

    # Digest and unknown schemes are refused
    return False

  def _CheckBasicAuthorization(self, req, in_data):
    """Decode Basic credentials and pass them to L{Authenticate}."""
    try:
      creds = base64.b64decode(in_data.encode("ascii")).decode("ascii")
    except (TypeError, binascii.Error, UnicodeError) as err:
      # The client's mistake, not ours: one line, no traceback.
      logging.info("Cannot decode Basic authentication credentials: %s", err)
      return False

    user, colon, password = creds.partition(":")
    if not colon:
      return False
    return self.Authenticate(req, user, password)

  def Authenticate(self, req, user, password):
    """Tell whether C{user} may run C{req} with C{password}.

    Subclasses must override this; it may also raise an
    L{http.HttpException}, e.g. L{http.HttpForbidden}.
    """
    raise NotImplementedError()

  def VerifyBasicAuthPassword(self, req, username, password, expected):
    """Compare a password sent by a client with a stored one.

    C{expected} is C{{CLEARTEXT}secret}, C{{HA1}<hex>} (MD5 of
    C{"user:realm:password"}, realm from L{GetAuthRealm}) or, without a
    leading brace, a plain-text password.  Scheme names are case-insensitive;
    unknown ones never match.

    @rtype: bool
    @raise AssertionError: C{{HA1}} is used and the realm is empty
    """
    if not expected.startswith("{"):
      expected = self._CLEARTEXT_SCHEME + expected

    scheme_end = expected.find("}", 1)
    if scheme_end <= 1:
      logging.warning("Invalid scheme in password for user '%s'", username)
      return False

    scheme = expected[:scheme_end + 1].upper()
    stored = expected[scheme_end + 1:]

    # Compared in constant time: the time taken says nothing about how
    # much of the password was right.
    if scheme == self._CLEARTEXT_SCHEME:
      return hmac.compare_digest(password.encode("utf-8"),
                                 stored.encode("utf-8"))

    if scheme == self._HA1_SCHEME:
      realm = self.GetAuthRealm(req)
      if not realm:
        raise AssertionError("No authentication realm")
      a1 = "%s:%s:%s" % (username, realm, password)
      return hmac.compare_digest(
        stored.lower().encode("utf-8"),
        hashlib.md5(a1.encode("ascii")).hexdigest().encode("ascii"))

    logging.warning("Unknown scheme '%s' in password for user '%s'",
                    scheme, username)
    return False


class PasswordFileUser(object):
  """One user of a password file: name, stored password, list of options."""

  def __init__(self, name, password, options):
    self.name = name
    self.password = password
    self.options = options


def ParsePasswordFile(contents):
  """Parse a users file such as RAPI's C{users} file.

  Each line reads C{name password [option,option...]}, fields separated by
  whitespace.  Blank lines and lines starting with C{#} are skipped, and so
  (with a warning) are lines with fewer than two fields.  A later line for
  the same name replaces an earlier one.

  @type contents: str
  @rtype: dict
  @return: L{PasswordFileUser} objects keyed by user name
  """
  users = {}
  for line in contents.splitlines():
    line = line.strip()
    if not line or line.startswith("#"):
      continue

    fields = line.split(None, 2)
    if len(fields) < 2:
      logging.warning("Ignoring non-comment line with less than two fields")
      continue

    name, password = fields[:2]
    if len(fields) == 3:
      options = [option.strip() for option in fields[2].split(",")]
    else:
      options = []
    users[name] = PasswordFileUser(name, password, options)

  return users
