#!/usr/bin/env python3
"""Run Ganeti's own HTTP tests against this project's ganeti.http.

  run_ganeti_tests.py [options] GANETI_SOURCE CONSTANTS

GANETI_SOURCE is a Ganeti source checkout (a work tree with lib/ and test/)
or a bare git repository of Ganeti.  CONSTANTS gives Ganeti's generated
modules C{_constants.py} and C{_vcsversion.py}, which only a full build
makes: a directory holding them (searched recursively) or a Debian
C{ganeti-3.0} package file, unpacked here with C{dpkg -x}.

The script builds a scratch tree in a temporary directory: Ganeti's lib/ as
package C{ganeti} with this project's C{ganeti/http} in place of Ganeti's,
the generated modules (C{RPC_MAX_CONCURRENT_CONNECTIONS = 30} appended when
missing), test/py and test/data.  It then runs

- C{test/py/unit/http/test_server.py} and C{test_ssl.py} of the checkout
  (or of C{--rev} for a bare repository) with pytest, and
- C{test/py/legacy/ganeti.http_unittest.py} of C{--legacy-rev} (v3.1.1;
  the file is gone from later revisions) with unittest,

and prints pass/fail counts per file and test class.  The Python running
the tests (C{--python}) needs pytest, pycurl, pyOpenSSL, pyparsing and
bitarray.

Exit status: 0 when every test outside L{KNOWN_OBSOLETE} passed.
"""

import argparse
import collections
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
  os.path.abspath(__file__))))

UNIT_TESTS = ["test/py/unit/http/test_server.py",
              "test/py/unit/http/test_ssl.py"]
LEGACY_TEST = "test/py/legacy/ganeti.http_unittest.py"

#: Tests of internals of Ganeti's pre-3.2 server that no longer exist
#: anywhere (removed in Ganeti 3.2 as well): reported, not counted.
KNOWN_OBSOLETE = {
  (LEGACY_TEST, "TestMisc", "testDateTimeHeader"): "server._DateTimeHeader",
  (LEGACY_TEST, "TestMisc", "testServerSizeLimits"):
    "server._HttpClientToServerMessageReader",
}

_CONSTANTS_LINE = "RPC_MAX_CONCURRENT_CONNECTIONS = 30"

# Runs in the scratch tree: loads the legacy test file under a module name
# without dots and writes one outcome per test as JSON.
_LEGACY_RUNNER = r"""
import importlib.util, json, sys, traceback, unittest
(path, out) = sys.argv[1:3]
spec = importlib.util.spec_from_file_location("ganeti_http_unittest", path)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)

class Result(unittest.TextTestResult):
  outcomes = []
  def _Add(self, test, outcome, detail=""):
    self.outcomes.append([type(test).__name__,
                          getattr(test, "_testMethodName", str(test)),
                          outcome, detail])
  def addSuccess(self, test):
    super().addSuccess(test); self._Add(test, "passed")
  def addFailure(self, test, err):
    super().addFailure(test, err)
    self._Add(test, "failed", self._exc_info_to_string(err, test))
  def addError(self, test, err):
    super().addError(test, err)
    self._Add(test, "error", self._exc_info_to_string(err, test))
  def addSkip(self, test, reason):
    super().addSkip(test, reason); self._Add(test, "skipped", reason)
  def addExpectedFailure(self, test, err):
    super().addExpectedFailure(test, err); self._Add(test, "passed")
  def addUnexpectedSuccess(self, test):
    super().addUnexpectedSuccess(test); self._Add(test, "failed")

suite = unittest.defaultTestLoader.loadTestsFromModule(module)
unittest.TextTestRunner(verbosity=2, resultclass=Result).run(suite)
with open(out, "w") as handle:
  json.dump(Result.outcomes, handle)
"""


def _Git(git_dir, *args, **kwargs):
  return subprocess.run(["git", "-C", git_dir] + list(args), check=True,
                        stdout=subprocess.PIPE, **kwargs).stdout


def _IsGitRepository(path):
  return subprocess.run(["git", "-C", path, "rev-parse", "--git-dir"],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        check=False).returncode == 0


def _FetchSources(source, rev, legacy_rev, dest):
  """Put lib/, test/py, test/data and the legacy test under C{dest}."""
  if os.path.isdir(os.path.join(source, "lib", "http")):
    for name in ["lib", os.path.join("test", "py"),
                 os.path.join("test", "data")]:
      shutil.copytree(os.path.join(source, name), os.path.join(dest, name),
                      symlinks=True, dirs_exist_ok=True)
  elif _IsGitRepository(source):
    archive = _Git(source, "archive", rev, "lib", "test/py", "test/data")
    subprocess.run(["tar", "-x", "-C", dest], input=archive, check=True)
  else:
    raise SystemExit("%s is neither a Ganeti checkout nor a git repository"
                     % source)
  legacy_path = os.path.join(dest, LEGACY_TEST)
  if not os.path.exists(legacy_path):
    if not _IsGitRepository(source):
      raise SystemExit("%s lacks %s and is no git repository to take it"
                       " from" % (source, LEGACY_TEST))
    with open(legacy_path, "wb") as handle:
      handle.write(_Git(source, "show", "%s:%s" % (legacy_rev, LEGACY_TEST)))


def _FindConstants(constants, scratch):
  """Return the directory holding C{_constants.py} and C{_vcsversion.py}."""
  if os.path.isfile(constants) and constants.endswith(".deb"):
    unpacked = os.path.join(scratch, "constants-deb")
    subprocess.run(["dpkg", "-x", constants, unpacked], check=True)
    constants = unpacked
  if not os.path.isdir(constants):
    raise SystemExit("%s is neither a directory nor a .deb" % constants)
  found = sorted(glob.glob(os.path.join(constants, "**", "_constants.py"),
                           recursive=True), key=len)
  for path in found:
    directory = os.path.dirname(path)
    if os.path.isfile(os.path.join(directory, "_vcsversion.py")):
      return directory
  raise SystemExit("No _constants.py with a _vcsversion.py beside it in %s"
                   % constants)


def _BuildTree(sources, constants_dir, http_dir, run):
  ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
  ganeti_dir = os.path.join(run, "ganeti")
  shutil.copytree(os.path.join(sources, "lib"), ganeti_dir, ignore=ignore)
  shutil.rmtree(os.path.join(ganeti_dir, "http"))
  shutil.copytree(http_dir, os.path.join(ganeti_dir, "http"), ignore=ignore)
  shutil.copy(os.path.join(constants_dir, "_vcsversion.py"), ganeti_dir)
  with open(os.path.join(constants_dir, "_constants.py")) as handle:
    text = handle.read()
  if "\nRPC_MAX_CONCURRENT_CONNECTIONS" not in text:
    text += "\n%s\n" % _CONSTANTS_LINE
  with open(os.path.join(ganeti_dir, "_constants.py"), "w") as handle:
    handle.write(text)
  shutil.copytree(os.path.join(sources, "test"), os.path.join(run, "test"),
                  symlinks=True, ignore=ignore)


def _Env(run, extra_path=()):
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([run] + list(extra_path))
  env["PYTHONDONTWRITEBYTECODE"] = "1"
  return env


def _RunUnit(python, run, env):
  """Run the pytest files; return outcomes [(file, class, test, outcome)]."""
  xml_path = os.path.join(run, "unit-results.xml")
  subprocess.run([python, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                  "-rfE", "--junitxml", xml_path] + UNIT_TESTS,
                 cwd=run, env=env, check=False)
  outcomes = []
  if not os.path.exists(xml_path):
    return outcomes
  for case in ElementTree.parse(xml_path).iter("testcase"):
    classname = case.get("classname", "")
    module_path = classname.replace(".", "/")
    test_file = next((name for name in UNIT_TESTS
                      if module_path.startswith(name[:-len(".py")])), None)
    class_name = classname.rsplit(".", 1)[-1] if test_file else "?"
    if test_file and module_path == test_file[:-len(".py")]:
      class_name = "(module)"
    outcome = "passed"
    for child in case:
      if child.tag in ("failure", "error", "skipped"):
        outcome = {"failure": "failed", "error": "error",
                   "skipped": "skipped"}[child.tag]
    outcomes.append((test_file or classname, class_name, case.get("name"),
                     outcome))
  return outcomes


def _RunLegacy(python, run, env):
  out = os.path.join(run, "legacy-results.json")
  subprocess.run([python, "-c", _LEGACY_RUNNER,
                  os.path.join(run, LEGACY_TEST), out],
                 cwd=run, env=env, check=False)
  if not os.path.exists(out):
    return [(LEGACY_TEST, "(module)", "import", "error")]
  with open(out) as handle:
    return [(LEGACY_TEST, cls, name, outcome)
            for (cls, name, outcome, _) in json.load(handle)]


def _Report(outcomes):
  """Print counts per file and class; return the number of real failures."""
  counts = collections.OrderedDict()
  failures = 0
  for (test_file, cls, name, outcome) in outcomes:
    per_class = counts.setdefault(test_file, collections.OrderedDict())
    row = per_class.setdefault(cls, collections.Counter())
    if outcome in ("failed", "error") and (test_file, cls, name) in \
        KNOWN_OBSOLETE:
      row["obsolete"] += 1
    else:
      row[outcome] += 1
      if outcome in ("failed", "error"):
        failures += 1
  print()
  print("%-44s %6s %6s %6s %6s %8s" % ("file / class", "passed", "failed",
                                       "error", "skip", "obsolete"))
  totals = collections.Counter()
  for (test_file, per_class) in counts.items():
    file_total = collections.Counter()
    for row in per_class.values():
      file_total.update(row)
    print("%-44s %6d %6d %6d %6d %8d" % (
      os.path.basename(test_file), file_total["passed"],
      file_total["failed"], file_total["error"], file_total["skipped"],
      file_total["obsolete"]))
    for (cls, row) in per_class.items():
      print("  %-42s %6d %6d %6d %6d %8d" % (
        cls, row["passed"], row["failed"], row["error"], row["skipped"],
        row["obsolete"]))
    totals.update(file_total)
  for ((test_file, cls, name), missing) in sorted(KNOWN_OBSOLETE.items()):
    print("obsolete: %s %s.%s uses %s (gone from Ganeti 3.2 too)" %
          (os.path.basename(test_file), cls, name, missing))
  print()
  print("%d passed, %d failed, %d skipped, %d obsolete" % (
    totals["passed"], totals["failed"] + totals["error"], totals["skipped"],
    totals["obsolete"]))
  return failures


def main():
  parser = argparse.ArgumentParser(
    description=__doc__.split("\n\n", 1)[0],
    formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("source", help="Ganeti checkout or git repository")
  parser.add_argument("constants",
                      help="directory with _constants.py and _vcsversion.py,"
                           " or a ganeti-3.0 .deb")
  parser.add_argument("--rev", default="HEAD",
                      help="revision of a bare repository to test (HEAD)")
  parser.add_argument("--legacy-rev", default="v3.1.1",
                      help="revision to take %s from (v3.1.1)" % LEGACY_TEST)
  parser.add_argument("--python", default=sys.executable,
                      help="interpreter running the tests (this one)")
  parser.add_argument("--http", default=os.path.join(REPO_ROOT, "ganeti",
                                                     "http"),
                      help="the ganeti/http package to test (this repo's)")
  parser.add_argument("--backend",
                      help="set GANETI_HTTP_BACKEND for the tests")
  parser.add_argument("--keep", action="store_true",
                      help="keep the scratch tree and print its path")
  args = parser.parse_args()

  scratch = tempfile.mkdtemp(prefix="ganeti-upstream-tests-")
  try:
    sources = os.path.join(scratch, "src")
    run = os.path.join(scratch, "run")
    os.makedirs(os.path.join(sources, "test", "py", "legacy"))
    _FetchSources(os.path.abspath(args.source), args.rev, args.legacy_rev,
                  sources)
    constants_dir = _FindConstants(os.path.abspath(args.constants), scratch)
    os.makedirs(run)
    _BuildTree(sources, constants_dir, os.path.abspath(args.http), run)
    env = _Env(run)
    if args.backend:
      env["GANETI_HTTP_BACKEND"] = args.backend
    outcomes = _RunUnit(args.python, run, env)
    legacy_env = _Env(run, [os.path.join(run, "test", "py", "legacy")])
    if args.backend:
      legacy_env["GANETI_HTTP_BACKEND"] = args.backend
    outcomes += _RunLegacy(args.python, run, legacy_env)
    failures = _Report(outcomes)
  finally:
    if args.keep:
      print("scratch tree kept: %s" % scratch)
    else:
      shutil.rmtree(scratch, ignore_errors=True)
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
