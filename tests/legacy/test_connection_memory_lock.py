"""Ganeti 3.0's node daemon locks its memory (mlockall) and so do the
children it forks for each connection (its MlockallRequestExecutor locks
again: locks are not inherited across fork).  Our per-connection children,
on both backends, must have their memory locked as well, with Ganeti 3.0's
own noded code doing what its PrepNoded does."""

import os

import pytest

from tests.legacy.test_real_ganeti_handlers import ganeti_tree  # pylint: disable=unused-import
from tests.script_daemon import GetJson, ScriptDaemon

# PrepNoded of Ganeti 3.0: utils.Mlockall() and MlockallRequestExecutor,
# or, started with --no-mlock, neither; HttpServer called with 3.0's
# signature (so each connection is served in a child); prints its port.
_NODED_LIKE = """
import sys
from ganeti import utils
from ganeti.server import noded
from ganeti.http import server as http_server
from tests.new.test_fastcgi_server import LockedMemoryHandler
from tests.script_daemon import ServeUntilStdinCloses
if sys.argv[1] == "mlock":
  utils.Mlockall()
  executor = noded.MlockallRequestExecutor
else:
  executor = http_server.HttpServerRequestExecutor
server = http_server.HttpServer(object(), "127.0.0.1", 0, 20,
                                LockedMemoryHandler(),
                                request_executor_class=executor,
                                daemon_name="test")
ServeUntilStdinCloses(server)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="mlockall needs root (or a"
                    " memlock limit); CI runs as root")
@pytest.mark.parametrize("mlock", ["mlock", "no-mlock"])
@pytest.mark.parametrize("backend", ["legacy", "fastcgi"])
def test_connection_children_lock_memory_as_ganeti_30s_did(
    ganeti_tree, tmp_path, backend, mlock):
  with ScriptDaemon(_NODED_LIKE, tmp_path, backend=backend, args=[mlock],
                    pythonpath=ganeti_tree) as (daemon_pid, port):
    (pid, locked_kib) = GetJson(port, timeout=60)
  assert pid != daemon_pid  # served in a child of its own
  if mlock == "mlock":
    assert locked_kib > 1024
  else:
    assert locked_kib == 0
