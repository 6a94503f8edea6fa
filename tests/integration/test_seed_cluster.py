"""The seed's README, copy-pasted: three `graft node run` lines and `graft kv`."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.integration.harness import Cluster, node_command


def graft_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `graft` script (this interpreter's `-m graft.cli` if absent)."""
    script = Path(sys.executable).with_name("graft")
    command = [str(script), *args] if script.exists() else node_command(*args)
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def test_seed_command_lines_form_a_cluster_served_by_the_kv_commands(
    make_cluster: Callable[..., Cluster],
) -> None:
    """The seed's three command lines make one cluster that `graft kv set/get/del` use
    through any node."""
    cluster = make_cluster(3)
    for node in cluster.nodes.values():
        # The seed's flag shapes: --id N --port P --peers JSON (the others), plus --data-dir.
        command = node.command()
        assert command[command.index("node") :][:8] == [
            "node",
            "run",
            "--id",
            str(node.id),
            "--port",
            str(node.port),
            "--peers",
            cluster.peers_json(node.id),
        ]
    cluster.leader()
    one, two, three = (cluster.nodes[i].url for i in (1, 2, 3))

    done = graft_cli("kv", "set", one, "a", '{"a":"b","c":{"d":"e"}}')
    assert done.returncode == 0, done.stderr

    got = graft_cli("kv", "get", two, "a")
    assert got.returncode == 0, got.stderr
    assert got.stdout == '{"a":"b","c":{"d":"e"}}\n'

    deleted = graft_cli("kv", "del", three, "a")
    assert deleted.returncode == 0, deleted.stderr

    missing = graft_cli("kv", "get", two, "a")
    assert missing.returncode != 0
    assert missing.stdout == ""
    lines = missing.stderr.splitlines()
    assert len(lines) == 1, missing.stderr
    assert "not found" in lines[0]
