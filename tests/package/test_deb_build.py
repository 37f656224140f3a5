"""The .deb that `make deb` builds: name, metadata, contents, scripts.

Read with Debian's own tools (dpkg-deb, lintian); tests/package/
test_deb_install.py installs it.
"""

import ast
import filecmp
import os
import subprocess
import sys

import pytest

import ganeti.http
from ganeti.http.backends import selection
from ganeti.http.backends import daemons
from ganeti.http.backends.fastcgi import settings
from ganeti.http.system import listening_socket_handover
from ganeti.http.system import trusted_dirs
from tests.package.conftest import BUILD_DEB, REPO

PACKAGE = "ganeti-http-shim"
LIBRARY = os.path.dirname(ganeti.http.PRIVATE_LIBRARY_DIR)
SHIM_TREE = LIBRARY + "/ganeti/http"
CONFFILE = "/etc/ganeti/http-backend.conf"
#: The Debian package of each module ganeti.http imports from outside the
#: standard library; None: the .deb brings it itself.
DEBIAN_PACKAGES = {"pycurl": "python3-pycurl", "OpenSSL": "python3-openssl",
                   "flup": None}

#: The fastcgi backend's default runtime directories and the handover
#: directories in them as the code decides them: (directory, mode, owner)
#: of root's daemons and of RAPI's account (the handover directories' mode
#: is the package's own).
RAPI_USER = daemons.Find("rapi").user
HANDOVER_DIR_MODE = "0700"
RUNTIME_DIRS = [
  (trusted_dirs.ROOT_RUNTIME_DIR, "%04o" % settings.ROOT_RUNTIME_DIR_MODE,
   "root"),
  (listening_socket_handover.HandoverDir("root"), HANDOVER_DIR_MODE, "root"),
  (trusted_dirs.DefaultRuntimeDir(RAPI_USER),
   "%04o" % settings.USER_RUNTIME_DIR_MODE, RAPI_USER),
  (listening_socket_handover.HandoverDir(RAPI_USER), HANDOVER_DIR_MODE,
   RAPI_USER)]


def _Field(deb, name):
  return subprocess.run(["dpkg-deb", "--field", deb, name], check=True,
                        stdout=subprocess.PIPE,
                        universal_newlines=True).stdout.strip()


@pytest.fixture(scope="module")
def unpacked(built_deb, tmp_path_factory):
  """The package's files (and its control files in DEBIAN/), unpacked."""
  root = tmp_path_factory.mktemp("unpacked")
  subprocess.run(["dpkg-deb", "--raw-extract", built_deb, str(root)],
                 check=True)
  return str(root)


def test_name_and_version_are_shim_version(built_deb):
  version = ganeti.http.SHIM_VERSION
  assert os.path.basename(built_deb) == "%s_%s_all.deb" % (PACKAGE, version)
  assert _Field(built_deb, "Package") == PACKAGE
  assert _Field(built_deb, "Version") == version
  setup_version = subprocess.run(
    [sys.executable, "setup.py", "--version"], cwd=REPO, check=True,
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    universal_newlines=True).stdout.split()[-1]
  assert setup_version == version


def _ThirdPartyImports():
  """Top-level modules that ganeti/http imports from outside the standard
  library and outside ganeti."""
  found = set()
  for (directory, _, files) in os.walk(os.path.join(REPO, "ganeti", "http")):
    for name in files:
      if not name.endswith(".py"):
        continue
      with open(os.path.join(directory, name)) as handle:
        tree = ast.parse(handle.read())
      for node in ast.walk(tree):
        if isinstance(node, ast.Import):
          found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
          found.add(node.module.split(".")[0])
  return found - set(sys.stdlib_module_names) - {"ganeti"}


def test_depends_on_what_the_code_imports(built_deb):
  imported = _ThirdPartyImports()
  assert imported == set(DEBIAN_PACKAGES)
  depends = {item.split()[0] for item in
             _Field(built_deb, "Depends").split(", ")}
  wanted = {package for package in DEBIAN_PACKAGES.values() if package}
  # adduser for the account, lighttpd for the fastcgi backend, python3
  assert depends == wanted | {"adduser", "lighttpd", "lighttpd-mod-openssl",
                              "python3"}
  assert _Field(built_deb, "Architecture") == "all"


def test_ships_every_file_of_ganeti_http_unchanged(unpacked):
  source = os.path.join(REPO, "ganeti", "http")
  expected = set()
  for (directory, subdirectories, files) in os.walk(source):
    subdirectories[:] = [name for name in subdirectories
                         if name != "__pycache__"]
    expected.update(os.path.relpath(os.path.join(directory, name), source)
                    for name in files if not name.endswith(".pyc"))
  shipped_root = unpacked + SHIM_TREE
  shipped = {os.path.relpath(os.path.join(directory, name), shipped_root)
             for (directory, _, files) in os.walk(shipped_root)
             for name in files}
  assert shipped == expected
  for name in expected:
    assert filecmp.cmp(os.path.join(source, name),
                       os.path.join(shipped_root, name), shallow=False), name


def test_brings_flup_from_its_wheel(unpacked):
  library = unpacked + ganeti.http.PRIVATE_LIBRARY_DIR
  with open(os.path.join(library, "flup-1.0.3.dist-info", "METADATA")) as handle:
    assert "Version: 1.0.3\n" in handle.read()
  assert sorted(os.listdir(library)) == ["flup", "flup-1.0.3.dist-info"]
  assert os.path.isfile(os.path.join(library, "flup", "server",
                                     "fcgi_base.py"))


def test_no_compiled_files_and_md5sums_match(unpacked):
  for (_, _, files) in os.walk(unpacked):
    assert not [name for name in files if name.endswith(".pyc")]
  subprocess.run(["md5sum", "--check", "--quiet", "DEBIAN/md5sums"],
                 cwd=unpacked, check=True)


def test_conffile_keeps_every_daemon_on_legacy(unpacked):
  with open(os.path.join(unpacked, "DEBIAN", "conffiles")) as handle:
    assert handle.read().split() == [CONFFILE]
  config = unpacked + CONFFILE
  environ = {selection.ENV_CONFIG_FILE: config}
  for daemon in ("noded", "rapi", "metad", "anything"):
    assert selection.ResolveBackend(daemon, environ)[0] == "legacy"
  fastcgi = selection.ReadSection(config, "fastcgi")
  assert fastcgi == {"frontend-user": "ganeti-http"}


def test_triggers_tmpfiles_and_scripts(unpacked):
  with open(os.path.join(unpacked, "DEBIAN", "triggers")) as handle:
    assert handle.read().split() == ["interest-noawait", "/usr/share/ganeti"]
  with open(unpacked + "/usr/lib/tmpfiles.d/ganeti-http-shim.conf") as handle:
    lines = [line.split() for line in handle
             if line.strip() and not line.startswith("#")]
  assert lines == [["d", path, mode, owner, owner, "-"]
                   for (path, mode, owner) in RUNTIME_DIRS]
  for script in ("DEBIAN/postinst", "DEBIAN/prerm", "DEBIAN/postrm",
                 "usr/sbin/ganeti-http-shim"):
    path = os.path.join(unpacked, script)
    assert os.access(path, os.X_OK), script
    subprocess.run(["sh", "-n", path], check=True)
    with open(path) as handle:
      text = handle.read()
    assert "@" not in text.replace("$@", ""), script  # placeholders replaced
  with open(unpacked + "/usr/sbin/ganeti-http-shim") as handle:
    assert "\nSHIM_TREE=%s\n" % SHIM_TREE in handle.read()


def _RunLogged(script, argument, tmp_path):
  """Run the maintainer script C{script} with C{argument}, every command it
  calls replaced by one that only logs its arguments (the stand-ins are
  all there is on C{PATH}: a command without one fails the script instead
  of changing this machine); return the logged calls, one list of words
  each."""
  stubs = tmp_path / "stubs"
  stubs.mkdir(exist_ok=True)
  log = tmp_path / "calls"
  for name in ("adduser", "install", "getent", "id", "py3compile",
               "py3clean", "rm", "rmdir", "ganeti-http-shim"):
    stub = stubs / name
    # "id -gn USER" answers USER, as for an account with a group of its name
    stub.write_text('#!/bin/sh\necho "${0##*/} $*" >> %s\n'
                    '[ "${0##*/}" != id ] || echo "$2"\n' % log)
    stub.chmod(0o755)
  log.write_text("")
  subprocess.run([script, argument], check=True, env={"PATH": str(stubs)})
  return [line.split() for line in log.read_text().splitlines()]


def test_maintainer_scripts_use_the_codes_directories_and_account(
    unpacked, tmp_path):
  """postinst makes the directories the daemons use by default, with the
  modes they would make them with, and the account the conffile names;
  postrm's purge removes those directories."""
  account = selection.ReadSection(unpacked + CONFFILE,
                                  "fastcgi")["frontend-user"]
  calls = _RunLogged(os.path.join(unpacked, "DEBIAN", "postinst"),
                     "configure", tmp_path)
  (adduser,) = [call for call in calls if call[0] == "adduser"]
  assert adduser[-1] == account
  assert [call for call in calls if call[0] == "install"] == [
    ["install", "-d", "-o", owner, "-g", owner, "-m", mode, path]
    for (path, mode, owner) in RUNTIME_DIRS]
  calls = _RunLogged(os.path.join(unpacked, "DEBIAN", "postrm"), "purge",
                     tmp_path)
  handover = [path for (path, _, _) in RUNTIME_DIRS[1::2]]
  runtime = [path for (path, _, _) in RUNTIME_DIRS[0::2]]
  assert calls == [["rm", "-rf"] + handover,
                   ["rmdir"] + list(reversed(runtime))]


def test_only_build_deb_knows_the_codes_facts():
  """The package's other files take them from build-deb's placeholders."""
  facts = [path for (path, _, _) in RUNTIME_DIRS] + [RAPI_USER]
  directory = os.path.dirname(BUILD_DEB)
  for name in os.listdir(directory):
    if name != os.path.basename(BUILD_DEB):
      with open(os.path.join(directory, name)) as handle:
        text = handle.read()
      assert [fact for fact in facts if fact in text] == [], name


def test_ganeti_http_command(unpacked):
  """/usr/sbin/ganeti-http runs on Ganeti's tree, else the package's copy."""
  path = unpacked + "/usr/sbin/ganeti-http"
  assert os.access(path, os.X_OK)
  with open(path) as handle:
    text = handle.read()
  assert text.startswith("#!/usr/bin/python3\n") and "@" not in text
  compile(text, path, "exec")
  library = os.path.dirname(ganeti.http.PRIVATE_LIBRARY_DIR)
  assert '("/usr/share/ganeti/default", "%s")' % library in text
  assert os.path.isfile(unpacked + library + "/ganeti/http/cli/main.py")


def test_lintian_finds_no_error(built_deb):
  result = subprocess.run(["lintian", "--suppress-tags", "no-manual-page",
                           built_deb], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
  tags = [line for line in result.stdout.splitlines()
          if line[:2] in ("E:", "W:")]
  assert tags == [] and result.returncode == 0, result.stdout
