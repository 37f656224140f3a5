"""What would stop a daemon at its next start, checked now.

Each check yields problems as sentences; L{Run} collects them for every
daemon that serves HTTP:

  - Ganeti's defaults file and the INI file parse, and their values are
    known backends, daemons and settings;
  - each daemon's backend resolves;
  - each daemon's certificate is readable by the user the daemon runs as
    (a missing one counts for the daemons that run on every node: RAPI's
    exists only on the master);
  - for a daemon on the fastcgi backend: its settings load, the frontend
    account exists, the daemon's runtime directory exists and only root
    and the daemon's user can change it, and lighttpd accepts the configuration the daemon would run
    (C{lighttpd -tt}, in a new directory only this user can write).
"""

import os
import pwd
import shutil
import stat
import tempfile

from ganeti.http.backends import daemons
from ganeti.http.backends import selection
from ganeti.http.backends.fastcgi.lighttpd import supervisor
from ganeti.http.cli import preview
from ganeti.http.system import trusted_dirs


def _Groups(user):
  entry = pwd.getpwnam(user)
  return (entry.pw_uid, set(os.getgrouplist(user, entry.pw_gid)))


def _Allows(info, uid, gids, bits):
  """Whether mode bits C{bits} (r=4, x=1) of C{info} apply to the user."""
  if uid == 0:
    return True
  if info.st_uid == uid:
    return info.st_mode & (bits << 6)
  if info.st_gid in gids:
    return info.st_mode & (bits << 3)
  return info.st_mode & bits


def ReadableBy(path, user):
  """Whether C{user} can read the file C{path} (every directory on the way
  searchable, the file readable); C{(False, reason)} or C{(True, None)}."""
  (uid, gids) = _Groups(user)
  directory = os.path.dirname(os.path.abspath(path))
  parts = []
  while True:
    parts.append(directory)
    if directory == os.path.dirname(directory):
      break
    directory = os.path.dirname(directory)
  for directory in reversed(parts):
    if not _Allows(os.stat(directory), uid, gids, 1):
      return (False, "%s cannot enter %s" % (user, directory))
  info = os.stat(path)
  if not _Allows(info, uid, gids, 4):
    return (False, "%s cannot read it (owner %d, group %d, mode %04o)" %
            (user, info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)))
  return (True, None)


def OneLine(error):
  """An error's text on one line (a parser's error spans several)."""
  return " ".join(str(error).split())


def _CheckFiles(environ):
  """The defaults file and the INI file: syntax and known names."""
  try:
    selection.ReadDefaultsFile(selection.DefaultsPath(environ))
    path = selection.ConfigPath(environ)
    config = selection.ReadConfig(path)
  except selection.BackendFlagError as err:
    yield OneLine(err)
    return
  for (key, value) in config.get(selection.CONFIG_SECTION, {}).items():
    if key != selection.CONFIG_DEFAULT_KEY and key not in daemons.NAMES:
      yield ("%s: key %r in section [%s] names no daemon that serves HTTP"
             " (known: %s)" % (path, key, selection.CONFIG_SECTION,
                               ", ".join(daemons.NAMES + ("default",))))
    if value.strip() and value.strip().lower() not in selection.BACKENDS:
      yield ("%s: key %r in section [%s] is %r, not one of %s" %
             (path, key, selection.CONFIG_SECTION, value,
              ", ".join(sorted(selection.BACKENDS))))
  try:
    selection.HandoverEnabled(environ)
  except selection.BackendFlagError as err:
    yield str(err)
  for section in config:
    if section.startswith("fastcgi:") and \
        section[len("fastcgi:"):] not in daemons.NAMES:
      yield ("%s: section [%s] names no daemon that serves HTTP" %
             (path, section))


def _CheckCertificate(daemon, environ):
  path = daemons.CertificatePath(daemon, environ)
  if not os.path.exists(path):
    if daemon.every_node:
      yield "its certificate %s does not exist" % path
    return
  try:
    (readable, reason) = ReadableBy(path, daemon.user)
  except KeyError:
    yield "the account %s it runs as does not exist" % daemon.user
    return
  except OSError as err:
    yield "cannot check its certificate %s: %s" % (path, err)
    return
  if not readable:
    yield "its certificate %s: %s" % (path, reason)


def _CheckRuntimeDir(daemon, settings):
  """The runtime directory, by the rules the daemon applies at its start
  (L{trusted_dirs.OpenTrusted}), for the daemon's user."""
  path = preview.RuntimeDir(daemon, settings)
  try:
    os.close(trusted_dirs.OpenTrusted(
      path, uid=pwd.getpwnam(daemon.user).pw_uid))
  except trusted_dirs.UntrustedPathError as err:
    yield "runtime-dir: %s" % err
  except OSError as err:
    yield "runtime-dir %s: %s" % (path, err)


def _CheckLighttpd(daemon, environ):
  """The fastcgi backend's settings, and the configuration through
  C{lighttpd -tt}."""
  if not daemon.every_node and not os.path.exists(
      daemons.CertificatePath(daemon, environ)):
    return  # not the master: RAPI does not start here
  private = tempfile.mkdtemp(prefix="ganeti-http-check-")
  try:
    (config, settings, frontend) = preview.Render(
      daemon, os.path.join(private, "state"), environ=environ)
    yield from _CheckRuntimeDir(daemon, settings)
    binary = settings.lighttpd or supervisor.FindLighttpd()
    checker = supervisor.LighttpdSupervisor(
      config, os.path.join(private, "state"), lighttpd_binary=binary,
      user=frontend.user, group=frontend.group,
      address=("127.0.0.1", daemons.Port(daemon)))
    checker.Check()
  except (supervisor.LighttpdError, selection.BackendFlagError, OSError,
          KeyError) as err:
    yield OneLine(err)
  finally:
    shutil.rmtree(private, ignore_errors=True)


def CheckDaemon(daemon, environ=os.environ):
  """The problems of one daemon (sentences without the daemon's name)."""
  try:
    (backend, _) = selection.ResolveBackend(daemon.name, environ)
  except selection.BackendFlagError as err:
    yield OneLine(err)
    return
  yield from _CheckCertificate(daemon, environ)
  if backend == selection.BACKEND_FASTCGI:
    yield from _CheckLighttpd(daemon, environ)


def Run(names=daemons.NAMES, environ=os.environ):
  """Every problem, as C{(daemon name or None, sentence)}."""
  problems = [(None, problem) for problem in _CheckFiles(environ)]
  if problems:
    return problems
  for name in names:
    daemon = daemons.Find(name)
    problems.extend((daemon.name, problem)
                    for problem in CheckDaemon(daemon, environ))
  return problems
