"""Which HTTP backend a daemon uses, and where that choice was made.

This module is the one reader of the INI file (L{ReadConfig}) and holds
every C{GANETI_HTTP_*} environment variable name.

The flag is looked up, first match wins, in:

  0. C{GANETI_HTTP_FASTCGI_SPAWNED=1}: lighttpd spawned the daemon as its
     FastCGI application, so it is C{fastcgi};
  1. the variable C{GANETI_HTTP_BACKEND_<DAEMON>} (the daemon's name
     upper-cased, "-" turned into "_");
  2. the daemon's key in section C{[backends]} of the INI file named by
     C{GANETI_HTTP_BACKEND_CONFIG} (default L{CONFIG_FILE} under Ganeti's
     C{sysconfdir}: L{DEFAULT_CONFIG_FILE});
  3. the variable C{GANETI_HTTP_BACKEND};
  4. the key C{default} of that section;
  5. L{BACKEND_LEGACY}.

A variable (L{Variable}) is looked up in the process's environment first,
then among the assignments of Ganeti's defaults file L{DEFAULTS_FILE}
(C{/etc/default/ganeti}; both files lie under C{$GANETI_ROOTDIR} when that
is set, as Ganeti's do: L{ganeti_paths}).  Ganeti's C{daemon-util} sources
that file without exporting what it assigns, so a plain C{NAME=value} line
there would otherwise never reach a daemon; the shim reads the file itself.
Only the flag's and the settings' variables are read from it (not those
lighttpd's configuration sets for a daemon it spawns), and only simple
assignments (C{NAME=value}, optionally quoted, optionally after
C{export}); a C{GANETI_HTTP_*} assignment that needs a shell to evaluate
is an error.

Values are compared case-insensitively with surrounding whitespace removed;
an empty value counts as unset.  A missing file is the same as an empty one,
but a file that exists and cannot be read or parsed is an error, raised the
first time a lookup reaches it.
"""

import collections
import configparser
import os
import re
import shlex
import sys

from ganeti.http import backends
from ganeti.http.backends import ganeti_paths

BACKEND_LEGACY = backends.LEGACY
BACKEND_FASTCGI = backends.FASTCGI
BACKENDS = backends.NAMES

ENV_PREFIX = "GANETI_HTTP_BACKEND"
ENV_CONFIG_FILE = "GANETI_HTTP_BACKEND_CONFIG"
#: Set to "1" by lighttpd's configuration when it spawns the daemon itself.
ENV_SPAWNED = "GANETI_HTTP_FASTCGI_SPAWNED"
#: Set by that configuration too: the directories it lets the spawned
#: daemon hand to lighttpd (X-Sendfile), comma-separated.
ENV_SPAWNED_SENDFILE_DIRS = "GANETI_HTTP_FASTCGI_SENDFILE_DIRS"
#: Overrides the fastcgi backend's C{processes} setting.
ENV_PROCESSES = "GANETI_HTTP_FASTCGI_PROCESSES"
#: Names another Ganeti defaults file than L{DEFAULTS_FILE} (tests, or a
#: Ganeti built with another sysconfdir).
ENV_DEFAULTS_FILE = "GANETI_HTTP_DEFAULTS_FILE"
#: Names the directory of the status files (L{ganeti.http.backends.
#: status_file}); default: Ganeti's run directory.
ENV_STATUS_DIR = "GANETI_HTTP_STATUS_DIR"
#: Whether the client keeps connections (L{ganeti.http.client_connections}).
ENV_CLIENT_KEEPALIVE = "GANETI_HTTP_CLIENT_KEEPALIVE"
#: Names the directory of lighttpd's error logs (L{ganeti.http.backends.
#: fastcgi.lighttpd.error_log}); default: Ganeti's log directory.
ENV_LOG_DIR = "GANETI_HTTP_LOG_DIR"
#: Set by the daemon in the environment of the lighttpd it starts: where
#: lighttpd writes its access log (L{ganeti.http.backends.fastcgi.lighttpd.
#: access_log}), a pipe the daemon reads.
ENV_ACCESS_LOG = "GANETI_HTTP_LIGHTTPD_ACCESS_LOG"
#: "no" (or "off", "0", "false") turns off the listening socket's handover
#: across a restart (L{HandoverEnabled}); also key C{enabled} of section
#: L{HANDOVER_SECTION} of the INI file.
ENV_HANDOVER = "GANETI_HTTP_HANDOVER"
#: Names the handover directory (default: L{ganeti.http.system.
#: listening_socket_handover.HandoverDir}; tests).
ENV_HANDOVER_DIR = "GANETI_HTTP_HANDOVER_DIR"
#: The INI file, under Ganeti's C{sysconfdir}.
CONFIG_FILE = "ganeti/http-backend.conf"
#: Its path on a node without C{$GANETI_ROOTDIR}.
DEFAULT_CONFIG_FILE = ganeti_paths.SysConfPath(CONFIG_FILE, {})
#: Ganeti's defaults file, which daemon-util sources (Ganeti 3.0's
#: C{$SYSCONFDIR/default/ganeti}), under Ganeti's C{sysconfdir}.
DEFAULTS_FILE_IN_SYSCONFDIR = "default/ganeti"
#: Its path on a node without C{$GANETI_ROOTDIR}.
DEFAULTS_FILE = ganeti_paths.SysConfPath(DEFAULTS_FILE_IN_SYSCONFDIR, {})
CONFIG_SECTION = "backends"
CONFIG_DEFAULT_KEY = "default"
HANDOVER_SECTION = "handover"
_ON_VALUES = ("1", "yes", "true", "on")
_OFF_VALUES = ("0", "no", "false", "off")


class BackendFlagError(ValueError):
  """The flag has an unknown value, or its file cannot be read or parsed."""


def DaemonVariable(daemon_name):
  """Return the name of the daemon's own environment variable.

  >>> DaemonVariable("noded")
  'GANETI_HTTP_BACKEND_NODED'
  """
  return "%s_%s" % (ENV_PREFIX, daemon_name.upper().replace("-", "_"))


def DefaultDaemonName(program=None):
  """Return the daemon's name as derived from its program.

  That is the program's base name without a ".py" suffix and without a
  "ganeti-" prefix: C{/usr/sbin/ganeti-noded} gives C{noded}.

  @param program: the program's path (default: C{sys.argv[0]})
  """
  if program is None:
    program = sys.argv[0]
  name = os.path.basename(program)
  if name.endswith(".py"):
    name = name[:-len(".py")]
  if name.startswith("ganeti-"):
    name = name[len("ganeti-"):]
  return name


def _FileVariable(name):
  """Whether the variable C{name} may be set in L{DEFAULTS_FILE}: the
  flag's and the settings' variables, not those lighttpd's configuration
  sets for a daemon it spawns."""
  return (name.startswith(ENV_PREFIX) or
          name in (ENV_PROCESSES, ENV_STATUS_DIR, ENV_CLIENT_KEEPALIVE,
                   ENV_LOG_DIR, ENV_HANDOVER))


#: A line of a shell file that assigns a variable of this package.
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?(GANETI_HTTP_[A-Za-z0-9_]*)=(.*)$")


def DefaultsPath(environ=os.environ):
  """Return the path of Ganeti's defaults file (L{DEFAULTS_FILE} under
  C{$GANETI_ROOTDIR})."""
  return environ.get(ENV_DEFAULTS_FILE) or \
    ganeti_paths.SysConfPath(DEFAULTS_FILE_IN_SYSCONFDIR, environ)


def ReadDefaultsFile(path):
  """Return the C{GANETI_HTTP_*} assignments of the shell file C{path} as a
  dict (a later assignment wins, as in the shell); a missing file gives an
  empty dict.

  @raise BackendFlagError: the file is unreadable, or an assignment of such
      a variable is not a plain word (it needs a shell: C{$}, a backquote,
      several words)
  """
  try:
    with open(path, "r") as handle:
      lines = handle.read().splitlines()
  except FileNotFoundError:
    return {}
  except (OSError, UnicodeDecodeError) as err:
    raise BackendFlagError("Cannot read Ganeti's defaults file %s: %s" %
                           (path, err))
  found = {}
  for (number, line) in enumerate(lines, start=1):
    match = _ASSIGNMENT.match(line)
    if not match or not _FileVariable(match.group(1)):
      continue
    (name, raw) = match.groups()
    try:
      words = shlex.split(raw, comments=True)
    except ValueError as err:
      words = err
    if ("$" in raw or "`" in raw or not isinstance(words, list) or
        len(words) > 1):
      raise BackendFlagError("%s line %d: %s must be a plain value"
                             " (NAME=value), not %r" % (path, number, name,
                                                        raw))
    found[name] = words[0] if words else ""
  return found


def Variable(name, environ=os.environ):
  """Return C{(value, source)} of the variable C{name}: from the
  environment, else from Ganeti's defaults file (see above); C{(None,
  None)} when neither sets it.

  @raise BackendFlagError: see L{ReadDefaultsFile}
  """
  if environ.get(name):
    return (environ[name], "environment variable %s" % name)
  if _FileVariable(name):
    path = DefaultsPath(environ)
    value = ReadDefaultsFile(path).get(name)
    if value:
      return (value, "%s in %s" % (name, path))
  return (None, None)


def ConfigPath(environ=os.environ):
  """Return the path of the INI file that holds the flag and its settings.

  @raise BackendFlagError: see L{ReadDefaultsFile}
  """
  return Variable(ENV_CONFIG_FILE, environ)[0] or \
    ganeti_paths.SysConfPath(CONFIG_FILE, environ)


def ReadConfig(path):
  """Return the INI file at C{path} as a dict of sections, each a dict.

  A missing file gives an empty dict.

  @raise BackendFlagError: the file exists but is unreadable or malformed
  """
  # "key = value  ; comment" is a comment after the value, as an operator
  # expects (ConfigParser would otherwise keep it as part of the value).
  parser = configparser.ConfigParser(interpolation=None,
                                     inline_comment_prefixes=(";", "#"))
  try:
    with open(path, "r") as handle:
      parser.read_file(handle, source=path)
  except FileNotFoundError:
    return {}
  except (OSError, UnicodeDecodeError) as err:
    raise BackendFlagError("Cannot read the HTTP backend file %s: %s" %
                           (path, err))
  except configparser.Error as err:
    raise BackendFlagError("Malformed HTTP backend file %s: %s" %
                           (path, err))
  return {section: dict(parser.items(section))
          for section in parser.sections()}


def ReadSection(path, section):
  """Return the section C{section} of the INI file at C{path} as a dict
  (empty for a missing file or section).

  @raise BackendFlagError: see L{ReadConfig}
  """
  return ReadConfig(path).get(section, {})


def Switch(variable, section, key, environ=os.environ):
  """An on/off setting: the variable C{variable} (see L{Variable}), else
  key C{key} of section C{section} of the INI file; on when neither sets
  it.  On is 1, yes, true or on; off is 0, no, false or off.

  @raise BackendFlagError: another value, or see L{ReadConfig}
  """
  path = ConfigPath(environ)
  candidates = [
    Variable(variable, environ),
    (ReadSection(path, section).get(key),
     "key %r in section [%s] of %s" % (key, section, path)),
  ]
  for (raw, source) in candidates:
    if raw is None or not raw.strip():
      continue
    value = raw.strip().lower()
    if value in _ON_VALUES + _OFF_VALUES:
      return value in _ON_VALUES
    raise BackendFlagError("Unknown value %r from %s; expected on or off" %
                           (raw, source))
  return True


def HandoverEnabled(environ=os.environ):
  """Whether a restarted daemon takes its listening socket over from the
  stopped one (L{Switch}: L{ENV_HANDOVER}, key C{enabled} of section
  L{HANDOVER_SECTION}; default on).

  @raise BackendFlagError: see L{Switch}
  """
  return Switch(ENV_HANDOVER, HANDOVER_SECTION, "enabled", environ)


def SpawnedByLighttpd(environ=os.environ):
  """Whether lighttpd spawned this process as its FastCGI application."""
  return environ.get(ENV_SPAWNED) == "1"


def ForgetSpawned(environ=os.environ):
  """Remove what lighttpd's configuration set for the spawned daemon, so
  that daemons this one starts (noded starts the master daemons) do not
  take their standard input for a FastCGI socket."""
  for variable in (ENV_SPAWNED, ENV_SPAWNED_SENDFILE_DIRS):
    environ.pop(variable, None)


def _Candidates(daemon_name, environ):
  """Yield C{(raw value, source)} for each place, in precedence order."""
  if SpawnedByLighttpd(environ):
    yield (BACKEND_FASTCGI, "environment variable %s (spawned by lighttpd)"
           % ENV_SPAWNED)
  yield Variable(DaemonVariable(daemon_name), environ)

  path = ConfigPath(environ)
  section = ReadSection(path, CONFIG_SECTION)
  # ConfigParser lower-cases keys, so the lookup is case-insensitive too.
  daemon_key = daemon_name.lower()
  yield (section.get(daemon_key),
         "key %r in section [%s] of %s" % (daemon_key, CONFIG_SECTION, path))

  yield Variable(ENV_PREFIX, environ)

  yield (section.get(CONFIG_DEFAULT_KEY),
         "key %r in section [%s] of %s" % (CONFIG_DEFAULT_KEY, CONFIG_SECTION,
                                           path))


def ResolveBackend(daemon_name, environ=os.environ):
  """Return C{(backend, source)} for the daemon C{daemon_name}.

  C{backend} is L{BACKEND_LEGACY} or L{BACKEND_FASTCGI}; C{source} says in
  words where it came from, for the daemon's log.

  @param environ: the environment to read (default: the process's)
  @raise BackendFlagError: the first value found is not a known backend,
      or the flag file exists but cannot be read or parsed
  """
  if not daemon_name:
    raise ValueError("A daemon name is needed to resolve its HTTP backend")
  for (raw, source) in _Candidates(daemon_name, environ):
    if raw is None or not raw.strip():
      continue
    value = raw.strip().lower()
    if value not in BACKENDS:
      raise BackendFlagError("Unknown HTTP backend %r from %s; expected one"
                             " of: %s" % (raw, source,
                                          ", ".join(sorted(BACKENDS))))
    return (value, source)
  return (BACKEND_LEGACY, "built-in default")


#: The outcome of L{Choose}: the daemon's name, its backend, and in words
#: where the backend was chosen.
Choice = collections.namedtuple("Choice", ["daemon_name", "backend",
                                           "source"])


def Choose(daemon_name=None, environ=os.environ):
  """Return the L{Choice} for C{daemon_name} (default: L{DefaultDaemonName}).

  @raise BackendFlagError: see L{ResolveBackend}
  """
  daemon_name = daemon_name or DefaultDaemonName()
  (backend, source) = ResolveBackend(daemon_name, environ)
  return Choice(daemon_name, backend, source)
