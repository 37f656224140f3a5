"""The fastcgi backend: lighttpd in front, the handler as a FastCGI
application behind it (through flup).  Imported only when selected."""
