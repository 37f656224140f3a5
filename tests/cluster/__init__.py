"""The cluster test bed: a real single-node Debian 12 Ganeti 3.0 cluster.

See docs/testbed.md.
"""
