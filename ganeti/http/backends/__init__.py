"""The HTTP server backends a daemon's flag chooses between."""
