"""Request header fields as a handler sees them: as lighttpd hands them on.

On the fastcgi backend the handler's headers are what lighttpd (1.4.69,
Debian 12) passes in the CGI environment, which is not what the client
sent: lighttpd drops fields with an empty value, joins repeated fields of
one name (in any case) with ", " (a Cookie with "; "), refuses a repeated
Host, Content-Type or If-Modified-Since of another value (a repeat of the
same value is dropped; of If-None-Match the first wins), never passes
Transfer-Encoding or Proxy, and names each field as a CGI variable, in
which every character but letters and digits is "_": fields whose names
differ only there ("X-Auth", "X_Auth") become one variable and the one
lighttpd lists last wins.  The fastcgi backend builds the handler's
headers with L{HeadersFromCgiVariables}; the legacy backend with
L{AsLighttpdPassesThem}, from what the client sent, so that a handler
sees the same headers on both.
"""

import functools
import http.client
import re
import string

from ganeti import http as ganeti_http

#: Fields lighttpd keeps one of: a repeat with another value is a 400.
_SINGLE = frozenset(["host", "content-type", "if-modified-since",
                     "http2-settings"])

#: Fields lighttpd keeps the first of, dropping repeats.
_FIRST_WINS = frozenset(["if-none-match"])

#: Fields lighttpd never passes to its backend (Transfer-Encoding is
#: hop-by-hop; a Proxy variable would be HTTP_PROXY, see httpoxy.org).
_NOT_PASSED = frozenset(["transfer-encoding", "proxy"])

#: CGI variables that carry a header without the HTTP_ prefix.
_UNPREFIXED_HEADERS = {
  "CONTENT_TYPE": ganeti_http.HTTP_CONTENT_TYPE,
  "CONTENT_LENGTH": ganeti_http.HTTP_CONTENT_LENGTH,
}

#: What the HTTP_ form of those would be: a client's "Content_Length"
#: (underscore), which must not become a second Content-Length.
_ALIASES_OF_UNPREFIXED = frozenset("HTTP_" + variable
                                   for variable in _UNPREFIXED_HEADERS)

_NOT_ALPHANUMERIC = re.compile("[^A-Za-z0-9]")

#: Characters of a header name (RFC 9110's "token").
_TOKEN_CHARACTERS = frozenset(string.ascii_letters + string.digits +
                              "!#$%&'*+-.^_`|~")

#: Control characters a header value may not hold (all but the tab).
_FORBIDDEN_IN_VALUE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")


def IsValidField(name, value):
  """Whether a header field (of a request or a response) is well formed:
  its name a token, its value free of control characters but the tab
  (RFC 9110)."""
  return bool(name and _TOKEN_CHARACTERS.issuperset(name)
              and not _FORBIDDEN_IN_VALUE.search(value))


def CgiVariable(name):
  """The CGI variable lighttpd passes a field as: C{X_Auth} and C{X-Auth}
  are both C{HTTP_X_AUTH}, C{Content-Type} is C{CONTENT_TYPE}."""
  for (variable, header) in _UNPREFIXED_HEADERS.items():
    if name.lower() == header.lower():
      return variable
  return "HTTP_" + _NOT_ALPHANUMERIC.sub("_", name).upper()


@functools.lru_cache(maxsize=256)
def _HeaderName(variable):
  """C{HTTP_X_FORWARDED_FOR} -> C{X-Forwarded-For} (remembered: the same
  few names come with every request)."""
  return "-".join(part.capitalize() for part in variable[5:].split("_"))


def HeadersFromCgiVariables(variables):
  """The handler's header object from a CGI environment (a dict)."""
  pairs = []
  for (variable, value) in variables.items():
    if variable.startswith("HTTP_"):
      if variable not in _ALIASES_OF_UNPREFIXED:
        pairs.append((_HeaderName(variable), value))
    elif variable in _UNPREFIXED_HEADERS:
      pairs.append((_UNPREFIXED_HEADERS[variable], value))
  headers = http.client.HTTPMessage()
  for (name, value) in sorted(pairs, key=lambda pair: pair[0]):
    headers[name] = value
  return headers


def AsLighttpdPassesThem(fields):
  """The handler's header object from the fields a client sent, as the
  fastcgi backend would build it from what lighttpd passes on (see the
  module's description).

  @param fields: C{(name, value)} pairs in the order the client sent
      them, values without the white space around them
  @raise ganeti.http.HttpBadRequest: a repeated field lighttpd refuses
  """
  merged = {}  # lower-case name -> [name, value], in order of appearance
  for (name, value) in fields:
    key = name.lower()
    if not value or key in _NOT_PASSED:
      continue
    if key not in merged:
      merged[key] = [name, value]
    elif key in _SINGLE:
      if value.lower() != merged[key][1].lower():
        raise ganeti_http.HttpBadRequest("Repeated %s field with another"
                                         " value" % name)
    elif key == "cookie":
      merged[key][1] += "; " + value
    elif key not in _FIRST_WINS:
      merged[key][1] += ", " + value
  # The one lighttpd lists last wins: fields in order of first appearance.
  return HeadersFromCgiVariables(dict((CgiVariable(name), value)
                                      for (name, value) in merged.values()))
