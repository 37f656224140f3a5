"""lighttpd as the fastcgi backend's frontend: its configuration (pure),
the process that runs it, and the directories it keeps its state in."""
