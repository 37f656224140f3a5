"""Ganeti 3.0 as Debian packages it, with this project's C{ganeti.http}.

Debian 12 ships Ganeti's Python code in the C{ganeti-3.0} package (under
C{usr/share/ganeti/3.0/ganeti}).  L{GanetiTree} fetches that package with
C{apt-get download} (never installing it), unpacks it with C{dpkg -x} and
builds a directory to put on C{sys.path} in which Ganeti's own C{ganeti}
package has this project's C{ganeti/http} in place of its own.  Ganeti's
daemon modules (C{ganeti.server.rapi}, C{ganeti.server.noded}) then run on
top of our HTTP layer, unmodified.

The package is cached in C{.cache/ganeti-deb/} at the top of the repository
(or in C{$GANETI_DEB_CACHE}); C{$GANETI_30_DEB} may name an already
downloaded C{.deb} instead.
"""

import glob
import importlib.util
import os
import shutil
import subprocess
import tempfile

PACKAGE = "ganeti-3.0"

#: Where the C{ganeti} Python package lies inside the Debian package.
PYTHON_DIR = os.path.join("usr", "share", "ganeti", "3.0")

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: This project's C{ganeti.http} package.
OUR_HTTP_DIR = os.path.join(REPO_ROOT, "ganeti", "http")

#: Third-party modules Ganeti 3.0's rapi and noded modules import, keyed by
#: the name to import, with the PyPI distribution providing each.
THIRD_PARTY_MODULES = {
  "OpenSSL": "pyOpenSSL",
  "pyparsing": "pyparsing",
  "bitarray": "bitarray",
  "simplejson": "simplejson",
  "pyinotify": "pyinotify",
  "pycurl": "pycurl",
}


class Unavailable(Exception):
  """The Debian package cannot be had on this machine."""


def CacheDir():
  """The directory keeping the downloaded and unpacked package."""
  return (os.environ.get("GANETI_DEB_CACHE") or
          os.path.join(REPO_ROOT, ".cache", "ganeti-deb"))


def MissingModules():
  """Names of the PyPI distributions whose modules cannot be imported.

  Besides these, Ganeti 3.0 needs the stdlib's C{asyncore} (Python < 3.12);
  it is reported as C{"asyncore (Python < 3.12)"}.
  """
  missing = [dist for (module, dist) in sorted(THIRD_PARTY_MODULES.items())
             if importlib.util.find_spec(module) is None]
  if importlib.util.find_spec("asyncore") is None:
    missing.append("asyncore (Python < 3.12)")
  return missing


def _Run(args, cwd=None):
  return subprocess.run(args, cwd=cwd, stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                        universal_newlines=True, check=False)


def FindDeb(cache_dir=None):
  """Return the path of the C{ganeti-3.0} package, downloading it if needed.

  @raise Unavailable: no C{apt-get} here, or the download failed
  """
  explicit = os.environ.get("GANETI_30_DEB")
  if explicit:
    if not os.path.isfile(explicit):
      raise Unavailable("GANETI_30_DEB names no file: %s" % explicit)
    return explicit
  cache_dir = cache_dir or CacheDir()
  os.makedirs(cache_dir, exist_ok=True)
  pattern = os.path.join(cache_dir, "%s_*.deb" % PACKAGE)
  found = sorted(glob.glob(pattern))
  if found:
    return found[-1]
  if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
    raise Unavailable("apt-get and dpkg are needed to fetch %s" % PACKAGE)
  result = _Run(["apt-get", "download", PACKAGE], cwd=cache_dir)
  if result.returncode != 0 and os.geteuid() == 0:
    # A fresh machine has no package lists yet.
    _Run(["apt-get", "update", "-q"])
    result = _Run(["apt-get", "download", PACKAGE], cwd=cache_dir)
  found = sorted(glob.glob(pattern))
  if result.returncode != 0 or not found:
    raise Unavailable("apt-get download %s failed:\n%s" %
                      (PACKAGE, result.stdout))
  return found[-1]


def Unpack(deb, cache_dir=None):
  """Unpack C{deb} once (cached); return the directory holding C{ganeti/}."""
  cache_dir = cache_dir or CacheDir()
  name = os.path.basename(deb)
  if name.endswith(".deb"):
    name = name[:-len(".deb")]
  target = os.path.join(cache_dir, name)
  if not os.path.isdir(target):
    scratch = tempfile.mkdtemp(prefix=".unpack-", dir=cache_dir)
    try:
      result = _Run(["dpkg", "-x", deb, scratch])
      if result.returncode != 0:
        raise Unavailable("dpkg -x %s failed:\n%s" % (deb, result.stdout))
      try:
        os.rename(scratch, target)
      except OSError:
        if not os.path.isdir(target):  # else another run won the race
          raise
    finally:
      if os.path.isdir(scratch):
        shutil.rmtree(scratch)
  python_dir = os.path.join(target, PYTHON_DIR)
  if not os.path.isfile(os.path.join(python_dir, "ganeti", "__init__.py")):
    raise Unavailable("%s has no ganeti package under %s" % (deb, PYTHON_DIR))
  return python_dir


def BuildTree(dest, python_dir, http_dir=OUR_HTTP_DIR):
  """Copy Ganeti's package to C{dest}/ganeti with C{http_dir} as its http.

  @return: C{dest}, the entry to put on C{sys.path} (or C{PYTHONPATH})
  """
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  ganeti_dir = os.path.join(dest, "ganeti")
  shutil.copytree(os.path.join(python_dir, "ganeti"), ganeti_dir,
                  ignore=ignore)
  shutil.rmtree(os.path.join(ganeti_dir, "http"))
  shutil.copytree(http_dir, os.path.join(ganeti_dir, "http"), ignore=ignore)
  return dest


def GanetiTree(dest, http_dir=OUR_HTTP_DIR):
  """Fetch, unpack and overlay in one go; return the C{sys.path} entry.

  @raise Unavailable: the package cannot be had here
  """
  return BuildTree(dest, Unpack(FindDeb()), http_dir=http_dir)
