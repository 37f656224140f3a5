"""Packaging for ganeti-http-shim.

``ganeti`` is a namespace package here: this project ships only
``ganeti.http`` and must not shadow the rest of an installed Ganeti.
"""

import re

from setuptools import setup, find_namespace_packages


def _ShimVersion():
  """SHIM_VERSION from ganeti/http/__init__.py, read without importing it."""
  with open("ganeti/http/__init__.py") as handle:
    return re.search(r'^SHIM_VERSION = "([^"]+)"$', handle.read(),
                     re.MULTILINE).group(1)


setup(
  name="ganeti-http-shim",
  version=_ShimVersion(),
  description="Ganeti's HTTP layer with a lighttpd + FastCGI backend",
  packages=find_namespace_packages(include=["ganeti.*", "shims"]),
  python_requires=">=3.9",
  install_requires=["flup==1.0.3", "pycurl"],
  extras_require={
    # pytest runs the suite, hypothesis drives the property tests and
    # cryptography makes the test certificates (Ganeti-style X.509 v1).
    "test": ["pytest", "hypothesis", "cryptography", "pyOpenSSL", "pyparsing", "bitarray", "simplejson", "pyinotify"],
  },
  entry_points={
    "console_scripts": ["ganeti-http = ganeti.http.cli.main:main"],
  },
)
