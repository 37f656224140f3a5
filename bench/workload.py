"""The request and the handler every small-request row of the bench uses.

A Ganeti RPC in miniature: a small JSON document is POSTed, the handler
parses it and answers with a small JSON document of fixed size.  The
static-file ceiling serves exactly L{RESPONSE_BODY}, so every target sends
back the same number of body bytes.
"""

import json

from ganeti import http as ganeti_http
from ganeti.http import server as http_server

#: Path the bench requests (also the static file's name).
PATH = "/rpc.json"

#: The POSTed body.
REQUEST_BODY = json.dumps({"node": "node1.example.com",
                           "procedure": "version",
                           "args": [1, 2, 3]}).encode("ascii")

#: What the handler answers (as the static file holds it).
RESPONSE_BODY = json.dumps({"success": True,
                            "result": {"node": "node1.example.com",
                                       "version": 2170000}}).encode("ascii")

CONTENT_TYPE = "application/json"


class JsonHandler(http_server.HttpServerHandler):
  """Parses the JSON request and returns L{RESPONSE_BODY}."""

  def HandleRequest(self, req):
    """Answer a POST of L{REQUEST_BODY}; anything else is a 400."""
    try:
      request = json.loads(req.request_body)
    except ValueError:
      raise ganeti_http.HttpBadRequest("Body is not JSON")
    if request.get("procedure") != "version":
      raise ganeti_http.HttpBadRequest("Unknown procedure")
    req.resp_headers[ganeti_http.HTTP_CONTENT_TYPE] = CONTENT_TYPE
    return RESPONSE_BODY
