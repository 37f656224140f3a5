"""One big transfer with Ganeti's client, in a process of its own.

  python -m bench.pycurl_transfer URL [--upload FILE] [--timeout S]

Downloads C{URL} into a sink that counts and drops the bytes
(C{response_file=}), or with C{--upload} PUTs FILE (C{post_data=} the open
file: read in pieces, sent with its size as Content-Length).  The client
always builds an https URL; a C{curl_config_fn} points it at C{URL}, so an
http URL goes over plain HTTP through the same client code.

Prints one JSON line: C{status}, C{downloaded} (bytes), C{body} (an
upload's answer), C{seconds} (the request alone, not this interpreter's
start) and C{error}.
"""

import argparse
import json
import sys
import time
import urllib.parse

import pycurl

from ganeti.http import client


def PlainHttp(url):
  """A C{curl_config_fn} that points Ganeti's client (always https) at
  C{url}, a plain HTTP one: the same client code over plain HTTP."""
  return lambda curl: curl.setopt(pycurl.URL, url)


class _CountingSink(object):
  """A response file that counts the bytes and keeps none."""

  def __init__(self):
    self.size = 0

  def write(self, data):
    """Count C{data}."""
    self.size += len(data)
    return len(data)


def _Transfer(url, upload, timeout):
  parsed = urllib.parse.urlsplit(url)
  path = parsed.path + ("?" + parsed.query if parsed.query else "")
  sink = _CountingSink()
  kwargs = {"response_file": sink}
  upload_file = None
  if upload is not None:
    upload_file = open(upload, "rb")
    kwargs = {"post_data": upload_file}
  try:
    request = client.HttpClientRequest(
      parsed.hostname, parsed.port, "PUT" if upload else "GET", path,
      read_timeout=timeout, curl_config_fn=PlainHttp(url),
      **kwargs)
    start = time.monotonic()
    client.ProcessRequests([request])
    seconds = time.monotonic() - start
  finally:
    if upload_file is not None:
      upload_file.close()
  return {"status": request.resp_status_code, "downloaded": sink.size,
          "body": request.resp_body, "seconds": seconds,
          "error": None if request.success else request.error}


def main(argv=None):
  """Transfer, print the outcome."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("url")
  parser.add_argument("--upload", metavar="FILE")
  parser.add_argument("--timeout", type=int, default=600)
  args = parser.parse_args(argv)
  sys.stdout.write(json.dumps(_Transfer(args.url, args.upload,
                                        args.timeout)) + "\n")


if __name__ == "__main__":
  main()
