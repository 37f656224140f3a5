"""Settings of the fastcgi backend that Ganeti's arguments do not carry.

They live in the backend flag's INI file (see L{selection}): section
C{[fastcgi]} for every daemon, C{[fastcgi:<daemon>]} for one daemon (its
keys win).  Keys:

- C{processes}: FastCGI backend processes (default 1: the handler runs in
  threads of the daemon, as with the legacy backend; more processes are
  forked copies of the daemon, for throughput or for handlers that are not
  thread-safe; they do not see what the daemon changes after the fork, such
  as RAPI's users file reloaded on SIGHUP, so only for handlers without
  such state; a daemon that locked its memory has workers that lock
  theirs);
- C{frontend-user}, C{frontend-group}: who lighttpd runs as when the daemon
  runs as root (default C{www-data}, Debian's web server account);
- C{lighttpd}: the lighttpd binary (default: found on C{PATH} or in
  C{/usr/sbin});
- C{sendfile-dirs}: comma-separated directories from which files that a
  handler returns are sent by lighttpd itself (X-Sendfile) instead of
  through the backend; lighttpd's user must be able to read them (default:
  none).  A daemon that lighttpd spawned takes the list from lighttpd's
  configuration instead (C{GANETI_HTTP_FASTCGI_SENDFILE_DIRS}, set by
  L{lighttpd_config.RenderSystemConfig}), so that it never asks lighttpd
  for what lighttpd was not configured to do;
- C{runtime-dir}: where each server's private directory (FastCGI socket,
  lighttpd config and log) is created (default
  L{trusted_dirs.DefaultRuntimeDir}: C{/run/ganeti-http} for root,
  C{/run/ganeti-http/<user>} for another user, such as RAPI's C{gnt-rapi}:
  the Debian package's tmpfiles.d entry makes those at boot).
  Only root and the daemon's user may be able to change it or any
  directory above it (L{trusted_dirs}); it is made if missing, mode 0755
  for root (lighttpd's account passes through it), 0700 otherwise;
- C{write-idle-timeout}: seconds lighttpd waits for a client to take
  response data and, once a response has started, for the handler's next
  piece of it (a streaming method's next feedback message): longer and
  the response is cut (default 360, lighttpd's; at most
  65535, lighttpd's limit).  A daemon that lighttpd spawned has lighttpd's
  own setting instead (C{shims.lighttpd_config --write-idle-timeout}).

The variable C{GANETI_HTTP_FASTCGI_PROCESSES} (in the environment or in
Ganeti's defaults file, see L{selection.Variable}) overrides C{processes}.  C{GANETI_HTTP_FASTCGI_SPAWNED=1}, which the system-service
configuration of lighttpd sets (L{lighttpd_config.RenderSystemConfig}),
says that lighttpd spawned the daemon with the FastCGI socket as its
standard input.
"""

import grp
import os
import pwd

from ganeti.http.backends import selection
from ganeti.http.backends.fastcgi.lighttpd import config as lighttpd_config
from ganeti.http.system import trusted_dirs

DEFAULT_FRONTEND_USER = "www-data"
#: The modes a missing runtime directory is made with: root's daemons'
#: (lighttpd's account passes through it), and another user's.  The Debian
#: package makes the default ones with the same (shims/debian/build-deb).
ROOT_RUNTIME_DIR_MODE = 0o755
USER_RUNTIME_DIR_MODE = 0o700


class SettingsError(selection.BackendFlagError):
  """A setting of the fastcgi backend is malformed or cannot be met (a
  kind of L{selection.BackendFlagError}: the settings share its file)."""


class FrontendAccount(object):
  """Who lighttpd runs as; all None when it runs as the daemon's user."""

  def __init__(self, user=None, group=None, uid=None, gid=None):
    self.user = user
    self.group = group
    self.uid = uid
    self.gid = gid


class FastCgiSettings(object):
  """The settings of one daemon's fastcgi backend.

  @param sources: where each setting came from, by key (C{"processes"},
      ...), named in errors about it
  """

  def __init__(self, processes=1, frontend_user=DEFAULT_FRONTEND_USER,
               frontend_group=None, runtime_dir=None, lighttpd=None,
               sendfile_dirs=(),
               write_idle_timeout=lighttpd_config.DEFAULT_WRITE_IDLE_TIMEOUT,
               sources=None):
    self._sources = dict(sources or {})
    for (key, value, maximum) in (
        ("processes", processes, None),
        ("write-idle-timeout", write_idle_timeout,
         lighttpd_config.MAX_IDLE_TIMEOUT)):
      if value < 1 or (maximum is not None and value > maximum):
        raise SettingsError(
          "%s must be at least 1%s, not %d%s" %
          (key, " and at most %d" % maximum if maximum else "", value,
           self._From(key)))
    self.processes = processes
    self.write_idle_timeout = write_idle_timeout
    self.frontend_user = frontend_user
    self.frontend_group = frontend_group
    self.runtime_dir = runtime_dir
    self.lighttpd = lighttpd
    self.sendfile_dirs = tuple(sendfile_dirs)
    for path in self.sendfile_dirs:
      if not os.path.isabs(path):
        raise SettingsError(
          "sendfile-dirs must be absolute paths, not %r%s" %
          (path, self._From("sendfile-dirs")))

  def Source(self, key):
    """Where setting C{key} came from, or None if it is the default."""
    return self._sources.get(key)

  def _From(self, key):
    """" (from <where>)" for an error about C{key}, or ""."""
    source = self.Source(key)
    return " (from %s)" % source if source else ""

  def FrontendIdentity(self):
    """Resolve the frontend account (only when running as root).

    @raise SettingsError: the account does not exist
    """
    if os.geteuid() != 0:
      return FrontendAccount()
    try:
      account = pwd.getpwnam(self.frontend_user)
      group = (grp.getgrnam(self.frontend_group) if self.frontend_group
               else grp.getgrgid(account.pw_gid))
    except KeyError as err:
      raise SettingsError(
        "The fastcgi backend's frontend account does not exist: %s%s" %
        (err, self._From("frontend-user") or self._From("frontend-group")))
    return FrontendAccount(account.pw_name, group.gr_name, account.pw_uid,
                            group.gr_gid)


def Load(daemon_name, environ=os.environ):
  """Read the settings of C{daemon_name}.

  @raise selection.BackendFlagError: the file cannot be read or parsed
  @raise SettingsError: a value is malformed
  """
  path = selection.ConfigPath(environ)
  config = selection.ReadConfig(path)
  values = {}
  sources = {}
  for section in ("fastcgi", "fastcgi:%s" % daemon_name):
    for (key, value) in config.get(section, {}).items():
      values[key] = value
      sources[key] = "key %r in section [%s] of %s" % (key, section, path)
  (processes, source) = selection.Variable(selection.ENV_PROCESSES, environ)
  if processes:
    values["processes"] = processes
    sources["processes"] = source
  numbers = {}
  for (key, default) in (("processes", 1),
                         ("write-idle-timeout",
                          lighttpd_config.DEFAULT_WRITE_IDLE_TIMEOUT)):
    try:
      numbers[key] = int(values.get(key, default))
    except ValueError:
      raise SettingsError(
        "%s of the fastcgi backend must be a number, not %r (from %s)"
        % (key, values[key], sources[key]))
  runtime_dir = values.get("runtime-dir") or trusted_dirs.DefaultRuntimeDir()
  _CheckRuntimeDir(runtime_dir, sources.get("runtime-dir"), path)
  return FastCgiSettings(
    processes=numbers["processes"],
    write_idle_timeout=numbers["write-idle-timeout"],
    frontend_user=values.get("frontend-user", DEFAULT_FRONTEND_USER),
    frontend_group=values.get("frontend-group"),
    runtime_dir=runtime_dir,
    lighttpd=values.get("lighttpd"),
    sendfile_dirs=_PathList(
      environ.get(selection.ENV_SPAWNED_SENDFILE_DIRS, "")
      if selection.SpawnedByLighttpd(environ)
      else values.get("sendfile-dirs", "")),
    sources=sources)


def _CheckRuntimeDir(path, source, config_path):
  """Make C{path} if missing (its mode set explicitly: Ganeti daemonizes
  with umask 077) and make sure only root and this user can change it.

  @param source: where the path came from, None for the default
  @param config_path: the settings' file, named in the hint
  @raise SettingsError: it cannot be made or is not safe
  """
  try:
    os.close(trusted_dirs.OpenTrusted(
      path, create_mode=ROOT_RUNTIME_DIR_MODE if os.geteuid() == 0
      else USER_RUNTIME_DIR_MODE))
  except (trusted_dirs.UntrustedPathError, OSError) as err:
    if source is None and os.geteuid() != 0:
      hint = (" The ganeti-http-shim package makes it at boot for Ganeti's"
              " daemon users (systemd-tmpfiles --create"
              " ganeti-http-shim.conf); for another user make it with"
              " 'install -d -m 0700 -o %s %s', or set runtime-dir in the"
              " section [fastcgi:<daemon>] of %s." %
              (os.path.basename(path), path, config_path))
    else:
      hint = ""
    raise SettingsError(
      "The fastcgi backend's runtime directory %s (%s) cannot be used: %s.%s"
      % (path, source or "the default for uid %d" % os.geteuid(), err,
         hint))


def _PathList(value):
  """The paths of a comma-separated list, symbolic links resolved (lighttpd
  compares resolved paths with them)."""
  paths = [path.strip() for path in value.split(",") if path.strip()]
  # A relative path stays as it is, for FastCgiSettings to refuse.
  return [os.path.realpath(path) if os.path.isabs(path) else path
          for path in paths]
