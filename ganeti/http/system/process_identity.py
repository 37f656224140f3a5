"""Processes, not merely pids: a pid names a process only until it exits,
after which the kernel may give it to another one.

A process is told apart from later holders of its pid by a pidfd (Linux
5.3 and later) or by its start time in C{/proc/<pid>/stat}.
"""

import errno
import os
import select


class Process(object):
  """One process: L{Alive} turns false for good when it exits, even if
  another process gets its pid (a pidfd says so; where the kernel has
  none, the start time does).

  @ivar pid: the process id
  @ivar parent: its parent's pid when this object was made
  @raise OSError: there is no process C{pid}
  """

  def __init__(self, pid):
    self.pid = pid
    self._pidfd = self._exited = None
    try:
      self._pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError) as err:
      if isinstance(err, OSError) and err.errno == errno.ESRCH:
        raise
      # Linux before 5.3, or a seccomp filter: the start time must do
    else:
      # epoll, unlike poll objects, may be asked from several threads.
      self._exited = select.epoll()
      self._exited.register(self._pidfd, select.EPOLLIN)
    (self.parent, self.start_time) = ParentAndStartTime(pid)

  def Alive(self):
    """Whether the process has not exited."""
    if self._exited is not None:
      return not self._exited.poll(0)
    return IsRunning(self.pid, self.start_time)

  def __del__(self):
    if getattr(self, "_exited", None) is not None:
      self._exited.close()
    if getattr(self, "_pidfd", None) is not None:
      os.close(self._pidfd)


def StatFields(pid):
  """The fields of C{/proc/<pid>/stat} after the name (field 3, the state,
  first); the name may hold spaces and parentheses, hence the split at the
  last ")".

  @raise OSError: there is no process C{pid}
  """
  with open("/proc/%d/stat" % pid, "rb") as handle:
    return handle.read().rsplit(b")", 1)[1].split()


def ParentAndStartTime(pid):
  """C{(parent pid, start time in clock ticks since boot)} of process
  C{pid} (fields 4 and 22 of C{/proc/<pid>/stat}).

  @raise OSError: there is no process C{pid}
  """
  fields = StatFields(pid)
  return (int(fields[1]), int(fields[19]))


def IsRunning(pid, start_time):
  """Whether the process C{pid} that started at C{start_time} (as given by
  L{ParentAndStartTime}) has not exited."""
  try:
    return ParentAndStartTime(pid)[1] == start_time
  except OSError:
    return False
