"""The legacy backend: Python's threaded C{http.server} with stdlib TLS."""
