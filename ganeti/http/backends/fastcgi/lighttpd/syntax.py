"""Values in lighttpd's configuration syntax (lighttpd 1.4).

Every value is written as a quoted lighttpd string, a plain integer, an
C{env.NAME} reference, or an array of those; a value the syntax cannot
carry (a NUL byte, a trailing backslash) is refused, so no setting can
inject configuration.
"""


def Quote(text):
  """Return C{text} as a lighttpd string literal.

  lighttpd's tokenizer knows one escape, a backslash before a double quote;
  any other backslash stands for itself, and a string may span lines.  So
  escaping every double quote is enough, except that a trailing backslash
  would escape the closing quote and a NUL would end the string early.
  """
  if not isinstance(text, str):
    raise TypeError("Not a string: %r" % (text, ))
  if "\0" in text:
    raise ValueError("lighttpd cannot take a NUL byte in %r" % (text, ))
  if text.endswith("\\"):
    raise ValueError("lighttpd cannot take a trailing backslash in %r" %
                     (text, ))
  return '"%s"' % text.replace('"', '\\"')


class Environment(str):
  """A value lighttpd reads from its environment (C{env.NAME})."""


def Value(value, indent=""):
  """Return C{value} in lighttpd syntax.

  Booleans become "enable"/"disable", integers stay bare, strings are
  quoted, tuples become arrays and dicts key => value arrays.  An array
  holding arrays is spread over several lines.
  """
  if isinstance(value, bool):
    return Quote("enable" if value else "disable")
  if isinstance(value, int):
    return str(value)
  if isinstance(value, Environment):
    return "env.%s" % value
  if isinstance(value, str):
    return Quote(value)
  inner = indent + "  "
  if isinstance(value, dict):
    items = ["%s => %s" % (Quote(key), Value(item, inner))
             for (key, item) in value.items()]
    nested = any(isinstance(item, (dict, tuple)) for item in value.values())
  elif isinstance(value, tuple):
    items = [Value(item, inner) for item in value]
    nested = any(isinstance(item, (dict, tuple)) for item in value)
  else:
    raise TypeError("No lighttpd form for %r" % (value, ))
  if not nested:
    return "(%s)" % ", ".join(items)
  return "(\n%s\n%s)" % (",\n".join(inner + item for item in items), indent)
