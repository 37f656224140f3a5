"""Benchmarks of the HTTP backends; C{make bench} runs L{bench.run}."""
