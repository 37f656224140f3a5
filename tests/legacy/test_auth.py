"""Tests for ganeti.http.auth: Basic authentication and the users file."""

import base64
import email.message
import hashlib
import logging
from http.client import HTTPMessage

import pytest
from hypothesis import given, strategies as st

from ganeti import http
from ganeti.http import auth

# md5("user:This is only a test:pw"), worked out independently of the code
_TEST_REALM = "This is only a test"
_TEST_HA1 = "92ea58ae804481498c257b2f65561a17"


class _Request(object):
  """The part of a server request that authentication looks at."""

  def __init__(self, headers=None):
    self.request_method = "GET"
    self.request_path = "/"
    self.request_headers = headers


class _Handler(auth.HttpServerRequestAuthentication):
  """Records every Authenticate call and accepts one user and password."""

  def __init__(self, realm="area1", required=False, user="joe", password="pw"):
    self.realm = realm
    self.required = required
    self.user = user
    self.password = password
    self.calls = []

  def GetAuthRealm(self, req):
    return self.realm

  def AuthenticationRequired(self, req):
    return self.required

  def Authenticate(self, req, user, password):
    self.calls.append((user, password))
    return (user, password) == (self.user, self.password)


def _Basic(credentials):
  return "Basic " + base64.b64encode(credentials.encode("ascii")).decode()


def _Headers(kind, value):
  """Authorization header in each container the server may hand over."""
  if kind == "dict":
    return {http.HTTP_AUTHORIZATION: value}
  headers = email.message.Message() if kind == "email" else HTTPMessage()
  # Message and HTTPMessage look header names up case-insensitively
  headers["authorization"] = value
  return headers


_HEADER_KINDS = ["dict", "email", "http.client"]


class TestConstantsAndHeader:
  def testConstants(self):
    assert auth.HTTP_BASIC_AUTH == "Basic"
    assert auth.HTTP_DIGEST_AUTH == "Digest"
    hsra = auth.HttpServerRequestAuthentication
    assert hsra.AUTH_REALM == "Unspecified"
    assert hsra._CLEARTEXT_SCHEME == "{CLEARTEXT}"
    assert hsra._HA1_SCHEME == "{HA1}"

  @pytest.mark.parametrize("params, expected", [
    ({}, "Basic"),
    ({"realm": "ganeti"}, "Basic realm=ganeti"),
    ({"realm": "A-b_9"}, "Basic realm=A-b_9"),
    ({"realm": ""}, "Basic realm=\"\""),
    ({"realm": "Ganeti Remote API"}, "Basic realm=\"Ganeti Remote API\""),
    ({"realm": "x,y"}, "Basic realm=\"x,y\""),
    ({"realm": "say \"hi\""}, "Basic realm=\"say \\\"hi\\\"\""),
    ({"realm": "secure", "foo": "x y"}, "Basic realm=secure foo=\"x y\""),
    ])
  def testFormatAuthHeader(self, params, expected):
    assert auth._FormatAuthHeader("Basic", params) == expected


class TestVerifyBasicAuthPassword:
  def _Verify(self, password, expected, user="user", realm="abc"):
    return _Handler(realm=realm).VerifyBasicAuthPassword(None, user, password,
                                                         expected)

  @pytest.mark.parametrize("password", ["pw", "pw{", "pw}", "pw{}", "}pw",
                                        "0", "a:b", "MiXeD", ""])
  def testCleartext(self, password):
    assert self._Verify(password, password)
    for prefix in ["{CLEARTEXT}", "{cleartext}", "{ClearText}"]:
      assert self._Verify(password, prefix + password)
    assert not self._Verify(password, password + "x")
    assert not self._Verify(password + "x", "{CLEARTEXT}" + password)

  def testCleartextIsCaseSensitive(self):
    assert not self._Verify("secret", "{CLEARTEXT}Secret")

  @pytest.mark.parametrize("expected", ["{unk}pw", "{UNK}pw", "{000}pw",
                                        "{}pw", "{pw", "{", "{HA}pw"])
  def testBadSchemes(self, expected):
    assert not self._Verify("pw", expected)

  @pytest.mark.parametrize("scheme", ["{HA1}", "{ha1}", "{Ha1}"])
  def testHa1(self, scheme):
    assert hashlib.md5(b"user:This is only a test:pw").hexdigest() == _TEST_HA1
    assert self._Verify("pw", scheme + _TEST_HA1, realm=_TEST_REALM)
    assert self._Verify("pw", scheme + _TEST_HA1.upper(), realm=_TEST_REALM)

  @pytest.mark.parametrize("user, password, realm", [
    ("user", "pw", "Admin area"),
    ("someone", "pw", _TEST_REALM),
    ("user", "something", _TEST_REALM),
    ("User", "pw", _TEST_REALM),
    ])
  def testHa1Mismatch(self, user, password, realm):
    assert not self._Verify(password, "{HA1}" + _TEST_HA1, user=user,
                            realm=realm)

  @pytest.mark.parametrize("realm", [None, ""])
  def testHa1WithoutRealm(self, realm):
    with pytest.raises(AssertionError):
      self._Verify("pw", "{HA1}" + _TEST_HA1, realm=realm)

  def testCleartextNeedsNoRealm(self):
    assert self._Verify("pw", "{CLEARTEXT}pw", realm=None)

  def testDefaultRealm(self):
    ha1 = hashlib.md5(b"user:Unspecified:pw").hexdigest()
    hsra = auth.HttpServerRequestAuthentication()
    assert hsra.VerifyBasicAuthPassword(None, "user", "pw", "{HA1}" + ha1)

  @given(user=st.text(st.characters(min_codepoint=32, max_codepoint=126)),
         password=st.text(st.characters(min_codepoint=32, max_codepoint=126)),
         realm=st.text(st.characters(min_codepoint=32, max_codepoint=126),
                       min_size=1))
  def testHa1Property(self, user, password, realm):
    ha1 = hashlib.md5(("%s:%s:%s" % (user, realm, password)).encode()
                     ).hexdigest()
    assert self._Verify(password, "{HA1}" + ha1, user=user, realm=realm)
    assert not self._Verify(password + "x", "{HA1}" + ha1, user=user,
                            realm=realm)


class TestPreHandleRequest:
  def testPublicWithoutCredentials(self):
    for headers in [None, {}, {"Accept": "text/plain"}]:
      handler = _Handler(realm=None)
      handler.PreHandleRequest(_Request(headers))
      assert handler.calls == []

  def testDefaultsArePublic(self):
    auth.HttpServerRequestAuthentication().PreHandleRequest(_Request())

  @pytest.mark.parametrize("headers", [None, {}, {"Accept": "text/plain"}])
  def testRequiredWithoutCredentials(self, headers):
    with pytest.raises(http.HttpUnauthorized) as info:
      _Handler(required=True).PreHandleRequest(_Request(headers))
    assert info.value.headers == {
      http.HTTP_WWW_AUTHENTICATE: "Basic realm=area1"}

  def testChallengeQuotesRealm(self):
    handler = _Handler(realm="Ganeti Remote API", required=True)
    with pytest.raises(http.HttpUnauthorized) as info:
      handler.PreHandleRequest(_Request())
    assert info.value.code == 401
    assert info.value.headers[http.HTTP_WWW_AUTHENTICATE] == \
      "Basic realm=\"Ganeti Remote API\""

  @pytest.mark.parametrize("realm", [None, ""])
  def testNoRealm(self, realm):
    with pytest.raises(AssertionError):
      _Handler(realm=realm, required=True).PreHandleRequest(_Request())
    # Credentials sent to a public resource need a realm too
    with pytest.raises(AssertionError):
      _Handler(realm=realm).PreHandleRequest(
        _Request({http.HTTP_AUTHORIZATION: ""}))

  @pytest.mark.parametrize("kind", _HEADER_KINDS)
  @pytest.mark.parametrize("required", [True, False])
  def testGoodCredentials(self, kind, required):
    handler = _Handler(required=required)
    handler.PreHandleRequest(_Request(_Headers(kind, _Basic("joe:pw"))))
    assert handler.calls == [("joe", "pw")]

  @pytest.mark.parametrize("kind", _HEADER_KINDS)
  @pytest.mark.parametrize("required", [True, False])
  def testWrongCredentials(self, kind, required):
    # Bad credentials are refused even where none are needed
    handler = _Handler(required=required)
    with pytest.raises(http.HttpUnauthorized) as info:
      handler.PreHandleRequest(_Request(_Headers(kind, _Basic("joe:bad"))))
    assert handler.calls == [("joe", "bad")]
    assert info.value.headers[http.HTTP_WWW_AUTHENTICATE].startswith("Basic ")

  @pytest.mark.parametrize("value", [
    "", "   ", "\t", "-", "@", "Digest", "Digest username=\"joe\"",
    "NewStyleAuth abc", "Bearer " + base64.b64encode(b"joe:pw").decode(),
    "Basic x_=_", "Basic !!!!", _Basic("joepw"),
    "Basic " + base64.b64encode("joe:p\u00e4".encode("utf-8")).decode(),
    ])
  def testRefused(self, value):
    handler = _Handler(required=True)
    with pytest.raises(http.HttpUnauthorized):
      handler.PreHandleRequest(_Request({http.HTTP_AUTHORIZATION: value}))
    assert handler.calls == []

  @pytest.mark.parametrize("value", ["Basic", "basic", "  Basic  "])
  def testBasicWithoutCredentials(self, value):
    with pytest.raises(http.HttpBadRequest):
      _Handler().PreHandleRequest(_Request({http.HTTP_AUTHORIZATION: value}))

  @pytest.mark.parametrize("user, password", [
    ("", ""), ("joe", ""), ("", "pw"), ("user name with spaces", "Foo Bar"),
    ("joe", ":"), ("joe", "foo:bar:baz"), ("joe", "###"),
    ])
  def testSplitAtFirstColon(self, user, password):
    handler = _Handler(user=user, password=password, required=True)
    handler.PreHandleRequest(
      _Request({http.HTTP_AUTHORIZATION: _Basic(user + ":" + password)}))
    assert handler.calls == [(user, password)]

  @pytest.mark.parametrize("scheme", ["basic", "BASIC", "bAsIc"])
  def testSchemeIsCaseInsensitive(self, scheme):
    value = scheme + _Basic("joe:pw")[len("Basic"):]
    handler = _Handler(required=True)
    handler.PreHandleRequest(_Request({http.HTTP_AUTHORIZATION: value}))
    assert handler.calls == [("joe", "pw")]

  def testExtraFieldsIgnored(self):
    handler = _Handler(required=True)
    handler.PreHandleRequest(_Request(
      {http.HTTP_AUTHORIZATION: "  " + _Basic("joe:pw") + " trailing junk "}))
    assert handler.calls == [("joe", "pw")]

  def testAuthenticateMayRaise(self):
    class Forbidding(_Handler):
      def Authenticate(self, req, user, password):
        raise http.HttpForbidden("read-only user")
    with pytest.raises(http.HttpForbidden):
      Forbidding(required=True).PreHandleRequest(
        _Request({http.HTTP_AUTHORIZATION: _Basic("joe:pw")}))

  def testAuthenticateMustBeOverridden(self):
    class NoAuthenticate(auth.HttpServerRequestAuthentication):
      def AuthenticationRequired(self, req):
        return True
    with pytest.raises(NotImplementedError):
      NoAuthenticate().PreHandleRequest(
        _Request({http.HTTP_AUTHORIZATION: _Basic("joe:pw")}))


class TestParsePasswordFile:
  def testSimple(self):
    users = auth.ParsePasswordFile("user1 password")
    assert list(users) == ["user1"]
    user = users["user1"]
    assert isinstance(user, auth.PasswordFileUser)
    assert (user.name, user.password, user.options) == \
      ("user1", "password", [])

  def testFull(self, caplog):
    contents = "\r\n".join([
      "# Users of the remote API",
      "jessica {HA1}7046452df2cbb530877058712cf17bd4 write",
      "",
      "   \t# indented comment",
      "\tbob\tsecret\t  read , write,,  ",
      "alone",
      "carol {cleartext}pw opt one, two",
      "bob newer",
      ])
    with caplog.at_level(logging.WARNING):
      users = auth.ParsePasswordFile(contents)
    assert sorted(users) == ["bob", "carol", "jessica"]
    assert users["jessica"].password == "{HA1}7046452df2cbb530877058712cf17bd4"
    assert users["jessica"].options == ["write"]
    # A later line replaces an earlier one for the same user
    assert (users["bob"].password, users["bob"].options) == ("newer", [])
    assert users["carol"].options == ["opt one", "two"]
    assert [r.levelno for r in caplog.records] == [logging.WARNING]

  def testOptionsKeepEmptyItems(self):
    users = auth.ParsePasswordFile("bob pw read,,write,")
    assert users["bob"].options == ["read", "", "write", ""]

  def testEmpty(self):
    assert auth.ParsePasswordFile("") == {}
    assert auth.ParsePasswordFile("\n  \n# nothing\n") == {}

  @given(st.lists(st.tuples(
    st.text("abcxyz019_-", min_size=1, max_size=8),
    st.text("abcXYZ{}:!", min_size=1, max_size=8),
    st.lists(st.text("rwxadmin", min_size=1, max_size=6), max_size=3)),
    max_size=6))
  def testRoundTrip(self, entries):
    lines = [" ".join([name, password] +
                      ([",".join(options)] if options else []))
             for name, password, options in entries]
    users = auth.ParsePasswordFile("\n".join(lines))
    expected = {name: (password, options)
                for name, password, options in entries}
    assert {name: (user.password, user.options)
            for name, user in users.items()} == expected
