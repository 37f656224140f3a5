"""What a process forked from the daemon lets go of.

A forked child inherits every descriptor of the daemon.  Some of them are
waited on by other processes until every copy is closed: Ganeti 3.0's
daemonization pipe (the starting parent waits for its end-of-file after
the daemon's C{prepare_fn}, which starts our server), the daemon's
listening TCP socket (a port nobody may bind while a copy is open), pipes
to lighttpd's lifeline, lock files.  A child that keeps them blocks
C{daemon-util start} or a restart.
"""

import logging
import os

#: Standard input, output and error: kept as they are.
_STANDARD = frozenset([0, 1, 2])

#: Descriptors of kernel objects that hold nothing another process waits
#: on (pidfds, epoll, eventfd, signalfd, timerfd): kept, as objects of the
#: child may use them (a peer check's pidfd).
_HARMLESS_PREFIX = "anon_inode:"


def ReleaseInherited(keep=()):
  """In a process just forked: let go of every inherited descriptor except
  0-2, C{keep}, the logging handlers' and kernel-object ones.

  Each such descriptor is made a copy of C{/dev/null} instead of being
  closed: Python objects inherited from the daemon (sockets and files of
  its other threads) still own those numbers, and would close whatever
  file got the number next, were it freed, once they are collected.
  """
  keep = _STANDARD | frozenset(keep) | _LoggingDescriptors()
  null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
  try:
    for descriptor in _OpenDescriptors():
      if descriptor in keep or descriptor == null:
        continue
      try:
        target = os.readlink("/proc/self/fd/%d" % descriptor)
      except OSError:
        continue  # closed meanwhile (the listing's own descriptor)
      if target.startswith(_HARMLESS_PREFIX):
        continue
      os.dup2(null, descriptor, inheritable=os.get_inheritable(descriptor))
  finally:
    os.close(null)


def _OpenDescriptors():
  return sorted(int(name) for name in os.listdir("/proc/self/fd"))


def _LoggingDescriptors():
  """The descriptors the logging handlers write to (files, the console,
  syslog's socket): what they hold with a C{fileno()}."""
  loggers = [logging.getLogger()] + [
    logger for logger in list(logging.Logger.manager.loggerDict.values())
    if isinstance(logger, logging.Logger)]
  descriptors = set()
  for logger in loggers:
    for handler in list(logger.handlers):
      for value in list(vars(handler).values()):
        try:
          descriptors.add(value.fileno())
        except (AttributeError, TypeError, ValueError, OSError):
          pass
  return frozenset(descriptor for descriptor in descriptors
                   if isinstance(descriptor, int) and descriptor >= 0)
