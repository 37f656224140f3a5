"""Editing the backend flag in the INI file (L{selection.ConfigPath}).

Only the daemon's own line in section C{[backends]} changes: comments,
blank lines, other sections and their order stay byte for byte.  The new
file replaces the old one atomically (written beside it, then renamed),
with the old file's owner and mode (0644 for a new file).
"""

import os
import re
import tempfile

from ganeti.http.backends import selection

_SECTION = re.compile(r"^\s*\[([^\]]*)\]")
_KEY = re.compile(r"^([^\s:=#;][^:=]*?)\s*[=:]")
_NEW_FILE_MODE = 0o644


def _Lines(text):
  return text.splitlines(keepends=True)


def _SectionBounds(lines, section):
  """C{(header index, end index)} of C{section}, or None."""
  start = None
  for (index, line) in enumerate(lines):
    match = _SECTION.match(line)
    if match:
      if start is not None:
        return (start, index)
      if match.group(1).strip() == section:
        start = index
  return None if start is None else (start, len(lines))


def _KeyLines(lines, first, end, key):
  """Indices of the lines of C{key} in C{lines[first:end]}, continuation
  lines included (ConfigParser's: indented, after a key)."""
  found = []
  inside = False
  for index in range(first, end):
    line = lines[index]
    match = _KEY.match(line)
    if match:
      inside = match.group(1).strip().lower() == key
    elif not (line[:1].isspace() and line.strip()):
      inside = False
    if inside:
      found.append(index)
  return found


def Edit(text, key, value):
  """C{text} with C{key = value} in C{[backends]} (C{value} None: the key
  removed); the rest as it was."""
  key = key.lower()
  lines = _Lines(text)
  if lines and not lines[-1].endswith("\n"):
    lines[-1] += "\n"
  bounds = _SectionBounds(lines, selection.CONFIG_SECTION)
  new_line = [] if value is None else ["%s = %s\n" % (key, value)]
  if bounds is None:
    if value is None:
      return text
    separator = ["\n"] if lines and lines[-1].strip() else []
    return "".join(lines + separator +
                   ["[%s]\n" % selection.CONFIG_SECTION] + new_line)
  (header, end) = bounds
  existing = _KeyLines(lines, header + 1, end, key)
  if existing:
    lines[existing[0]:existing[-1] + 1] = new_line
  elif value is not None:
    # after the section's last key (or its header), before the blank lines
    # and comments that lead to the next section
    last = header
    for index in range(header + 1, end):
      if _KEY.match(lines[index]) or lines[index][:1].isspace() and \
          lines[index].strip():
        last = index
    lines[last + 1:last + 1] = new_line
  else:
    return text
  return "".join(lines)


def Write(path, text):
  """Replace the file at C{path} with C{text} atomically (a symbolic link
  is followed: its target is replaced)."""
  path = os.path.realpath(path)
  try:
    info = os.stat(path)
    (mode, owner) = (info.st_mode & 0o7777, (info.st_uid, info.st_gid))
  except FileNotFoundError:
    (mode, owner) = (_NEW_FILE_MODE, None)
  directory = os.path.dirname(path)
  (handle, temporary) = tempfile.mkstemp(prefix=".http-backend.",
                                         dir=directory)
  try:
    with os.fdopen(handle, "w") as stream:
      os.fchmod(stream.fileno(), mode)
      if owner is not None and os.geteuid() == 0:
        os.fchown(stream.fileno(), *owner)
      stream.write(text)
      stream.flush()
      os.fsync(stream.fileno())
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.unlink(temporary)
    raise
  directory_handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
  try:
    os.fsync(directory_handle)
  finally:
    os.close(directory_handle)


def SetBackend(path, key, value):
  """Set (C{value} a backend) or remove (C{value} None) C{key} in section
  C{[backends]} of the file at C{path}; return whether the file changed.

  @raise selection.BackendFlagError: the file is malformed now, or would
      be after the edit (it is then left as it is)
  """
  selection.ReadConfig(path)
  try:
    with open(path, "r") as handle:
      text = handle.read()
  except FileNotFoundError:
    if value is None:
      return False
    text = ""
  edited = Edit(text, key, value)
  if edited == text:
    return False
  _CheckParses(path, edited)
  Write(path, edited)
  return True


def _CheckParses(path, text):
  """Raise L{selection.BackendFlagError} if C{text} would not parse."""
  with tempfile.NamedTemporaryFile("w", suffix=".conf") as scratch:
    scratch.write(text)
    scratch.flush()
    try:
      selection.ReadConfig(scratch.name)
    except selection.BackendFlagError as err:
      raise selection.BackendFlagError(
        "Not changing %s: the result would be malformed (%s)" % (path, err))
