"""The `graft` command line: help, argument parsing, completion, `node run`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

import graft.cli
from graft.cli import EXIT_USAGE, cli
from graft.server.settings import NodeSettings, PeerSetting

SEED_PEERS = (
    '[{"id":2,"address":"http://127.0.0.1:9002"},{"id":3,"address":"http://127.0.0.1:9003"}]'
)


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), prog_name="graft", env=env)


@pytest.fixture
def started(monkeypatch):
    """Replace the node runner: record the settings `node run` built."""
    calls: list[NodeSettings] = []

    def fake_run_node(settings: NodeSettings) -> int:
        calls.append(settings)
        return 0

    monkeypatch.setattr(graft.cli, "run_node", fake_run_node)
    monkeypatch.delenv("GRAFT_LOG_LEVEL", raising=False)
    monkeypatch.delenv("GOAMT_LOG_LEVEL", raising=False)
    return calls


def test_graft_alone_prints_help_listing_commands():
    result = run()
    assert result.exit_code == 0
    for command in ("node", "kv", "cluster", "snapshot", "completion"):
        assert f"  {command} " in result.stdout
    assert "Exit status:" in result.stdout


@pytest.mark.parametrize("group", ["kv", "cluster", "node", "snapshot"])
def test_groups_alone_print_help(group):
    result = run(group)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"Usage: graft {group} ")


def test_seed_three_node_line_parses(started):
    result = run("node", "run", "--id", "1", "--port", "9001", "--peers", SEED_PEERS)
    assert result.exit_code == 0, result.output
    [settings] = started
    assert settings.id == 1
    assert settings.listen == "tcp:9001:interface=127.0.0.1"
    assert settings.advertise == "http://127.0.0.1:9001"
    assert settings.peers == (
        PeerSetting(id=2, address="http://127.0.0.1:9002"),
        PeerSetting(id=3, address="http://127.0.0.1:9003"),
    )


def test_seed_single_node_line_parses(started):
    result = run("node", "run", "--id", "1", "--port", "9001")
    assert result.exit_code == 0, result.output
    assert started[0].peers == ()
    assert started[0].data_dir == os.path.join(".", "graft-data", "1")


def test_every_node_flag_reaches_the_settings(started, tmp_path):
    result = run(
        "node", "run", "--id", "2", "--host", "10.0.0.2", "--port", "9002",
        "--data-dir", str(tmp_path), "--advertise", "http://node2:9002",
        "--join", "http://node1:9001", "--snapshot-threshold", "500",
        "--max-body-bytes", "4096", "--log-level", "debug", "--transport", "amp",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert started == [
        NodeSettings(
            id=2,
            listen="tcp:9002:interface=10.0.0.2",
            advertise="http://node2:9002",
            data_dir=str(tmp_path),
            join="http://node1:9001",
            snapshot_threshold=500,
            max_body_bytes=4096,
            log_level="debug",
            transport="amp",
        )
    ]


def test_node_run_reads_config_and_environment(started, tmp_path):
    config = tmp_path / "1.yaml"
    config.write_text("id: 1\nlisten: tcp:9001\nadvertise: http://n1:9001\nlog_level: debug\n")
    result = run("node", "run", "--config", str(config), env={"GRAFT_LOG_LEVEL": "error"})
    assert result.exit_code == 0, result.output
    assert (started[0].listen, started[0].log_level) == ("tcp:9001", "error")


def test_bad_peers_json_is_one_line_naming_peers_exit_2(started):
    result = run("node", "run", "--id", "1", "--port", "9001", "--peers", "[{'id':2}]")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr.startswith("graft: --peers: not valid JSON: ")
    assert result.stderr.count("\n") == 1
    assert started == []


def test_missing_id_is_one_line_exit_2(started):
    result = run("node", "run", "--port", "9001")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == ("graft: missing node id: give --id N (or the id key in --config)\n")


def test_bad_yaml_is_one_line_exit_2(started, tmp_path):
    config = tmp_path / "1.yaml"
    config.write_text("id: 1\nsnapshot_threshold: ten\n")
    result = run("node", "run", "--config", str(config), "--port", "9001")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == (
        f'graft: config {config}: key "snapshot_threshold": expected an integer, got "ten"\n'
    )


def test_unknown_environment_log_level_is_one_line(started):
    result = run("node", "run", "--id", "1", "--port", "1", env={"GRAFT_LOG_LEVEL": "loud"})
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == (
        'graft: GRAFT_LOG_LEVEL: unknown log level "loud"; valid levels: debug, info, warn,'
        " error, fatal\n"
    )


def test_click_usage_errors_are_one_line_exit_2(started):
    result = run("node", "run", "--id", "1", "--port", "ninety")
    assert result.exit_code == EXIT_USAGE
    assert result.stderr == (
        "graft: Invalid value for '--port': 'ninety' is not a valid integer."
        " (see 'graft node run --help')\n"
    )
    assert run("kv", "frobnicate").stderr.count("\n") == 1
    assert run("kv", "get", "http://x").stderr == (
        "graft: Missing argument 'KEY'. (see 'graft kv get --help')\n"
    )


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script(shell):
    result = run("completion", shell)
    assert result.exit_code == 0
    assert "_GRAFT_COMPLETE" in result.stdout
    assert "_graft_completion" in result.stdout


def test_completion_script_answers_for_subcommands():
    env = {"_GRAFT_COMPLETE": "bash_complete", "COMP_WORDS": "graft cluster tr", "COMP_CWORD": "2"}
    result = CliRunner().invoke(cli, [], prog_name="graft", env=env)
    assert result.exit_code == 0
    assert result.stdout == "plain,transfer\n"


def test_completion_rejects_other_shells():
    assert run("completion", "tcsh").exit_code == EXIT_USAGE


def test_help_documents_exit_codes():
    for args in (("kv", "get", "--help"), ("cluster", "add", "--help"), ("node", "run", "--help")):
        assert "Exit status:" in run(*args).stdout


# -- node run in a real process, with a stand-in for graft.server ------------------------

FAKE_SERVER = textwrap.dedent(
    """
    import sys
    import graft.server
    from twisted.application import service, strports
    from twisted.internet.protocol import Factory, Protocol

    class Announcing(service.Service):
        def startService(self):
            super().startService()
            print("started", flush=True)

        def stopService(self):
            super().stopService()
            print("stopped", flush=True)

    def make_node_service(settings, reactor, own_process=False):
        node = service.MultiService()
        Announcing().setServiceParent(node)
        strports.service(settings.listen, Factory.forProtocol(Protocol)).setServiceParent(node)
        return node

    graft.server.make_node_service = make_node_service
    from graft.cli import main
    sys.argv = ["graft", *sys.argv[1:]]
    main()
    """
)


def start_node(*args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_LOG_LEVEL")}
    return subprocess.Popen(
        [sys.executable, "-c", FAKE_SERVER, "node", "run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_node_run_stops_cleanly_on_signal(tmp_path, signal_number):
    node = start_node(
        "--id", "1", "--listen", "tcp:0:interface=127.0.0.1",
        "--advertise", "http://127.0.0.1:1", "--data-dir", str(tmp_path),
    )  # fmt: skip
    try:
        assert node.stdout is not None
        assert node.stdout.readline() == "started\n"
        node.send_signal(signal_number)
        stdout, stderr = node.communicate(timeout=30)
    finally:
        node.kill()
    assert node.returncode == 0, stderr
    assert stdout == "stopped\n"
    assert "Traceback" not in stderr


def test_node_run_port_in_use_is_one_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        node = start_node("--id", "1", "--port", str(port), "--data-dir", str(tmp_path))
        try:
            _stdout, stderr = node.communicate(timeout=30)
        finally:
            node.kill()
    assert node.returncode == 1
    # Log lines may come first; the error is one line, last.
    assert stderr.splitlines()[-1] == f"graft: cannot listen on 127.0.0.1:{port}: port in use"
    assert "Traceback" not in stderr
