"""graft.config: defaults < YAML < environment < flags, and one-line errors."""

from __future__ import annotations

import os
import socket

import pytest

from graft.config import ConfigError, NodeFlags, build_settings, load_config_file
from graft.server.settings import NodeSettings, PeerSetting

SEED_PEERS = (
    '[{"id":2,"address":"http://127.0.0.1:9002"},{"id":3,"address":"http://127.0.0.1:9003"}]'
)


def write(tmp_path, text: str) -> str:
    path = tmp_path / "1.yaml"
    path.write_text(text)
    return str(path)


def error_of(flags: NodeFlags, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        build_settings(flags, environ or {})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_seed_three_node_line_builds_the_expected_settings():
    """The seed README's first line: node 1 of three, defaults from API.md."""
    settings = build_settings(NodeFlags(id=1, port=9001, peers=SEED_PEERS), {})
    assert settings == NodeSettings(
        id=1,
        listen="tcp:9001:interface=127.0.0.1",
        advertise="http://127.0.0.1:9001",
        data_dir=os.path.join(".", "graft-data", "1"),
        peers=(
            PeerSetting(id=2, address="http://127.0.0.1:9002"),
            PeerSetting(id=3, address="http://127.0.0.1:9003"),
        ),
    )


def test_seed_single_node_line_has_no_peers_and_api_defaults():
    settings = build_settings(NodeFlags(id=1, port=9001), {})
    assert settings.peers == ()
    assert settings.log_level == "info"
    assert settings.transport == "http"
    assert settings.snapshot_threshold == 10000
    assert settings.max_body_bytes == 1048576
    assert settings.join is None


def test_own_id_in_peers_is_dropped():
    """API.md section 1: a peer list naming the node itself is tolerated."""
    peers = '[{"id":1,"address":"http://127.0.0.1:9001"},{"id":2,"address":"http://h:9002"}]'
    settings = build_settings(NodeFlags(id=1, port=9001, peers=peers), {})
    assert settings.peers == (PeerSetting(id=2, address="http://h:9002"),)


def test_host_sets_listen_interface_and_advertise():
    settings = build_settings(NodeFlags(id=2, port=9002, host="10.0.0.2"), {})
    assert settings.listen == "tcp:9002:interface=10.0.0.2"
    assert settings.advertise == "http://10.0.0.2:9002"


def test_ipv6_host_is_escaped_in_listen_and_bracketed_in_advertise():
    settings = build_settings(NodeFlags(id=2, port=9002, host="::1"), {})
    assert settings.listen == "tcp:9002:interface=\\:\\:1"
    assert settings.advertise == "http://[::1]:9002"


def test_wildcard_host_advertises_the_machine_name():
    settings = build_settings(NodeFlags(id=2, port=9002, host="0.0.0.0"), {})
    assert settings.advertise == f"http://{socket.gethostname()}:9002"


def test_full_yaml_file(tmp_path):
    path = write(
        tmp_path,
        """
id: 1
listen: "tcp:9001:interface=127.0.0.1"
advertise: "http://127.0.0.1:9001"
data_dir: /var/lib/graft/1
peers:
  - {id: 2, address: "http://127.0.0.1:9002"}
  - {id: 3, address: "http://127.0.0.1:9003"}
log_level: warn
transport: amp
snapshot_threshold: 500
max_body_bytes: 2048
""",
    )
    settings = build_settings(NodeFlags(config=path), {})
    assert settings == NodeSettings(
        id=1,
        listen="tcp:9001:interface=127.0.0.1",
        advertise="http://127.0.0.1:9001",
        data_dir="/var/lib/graft/1",
        peers=(
            PeerSetting(id=2, address="http://127.0.0.1:9002"),
            PeerSetting(id=3, address="http://127.0.0.1:9003"),
        ),
        log_level="warn",
        transport="amp",
        snapshot_threshold=500,
        max_body_bytes=2048,
    )


def test_advertise_defaults_from_the_yaml_listen(tmp_path):
    path = write(tmp_path, 'id: 4\nlisten: "tcp:port=9004:interface=10.1.1.4"\n')
    assert build_settings(NodeFlags(config=path), {}).advertise == "http://10.1.1.4:9004"


def test_flags_win_over_yaml(tmp_path):
    path = write(
        tmp_path,
        "id: 1\nlisten: tcp:9001\nadvertise: http://a:9001\nsnapshot_threshold: 5\n"
        "peers: [{id: 2, address: 'http://a:9002'}]\nlog_level: debug\n",
    )
    flags = NodeFlags(
        config=path,
        id=7,
        port=9007,
        snapshot_threshold=9,
        peers='[{"id":3,"address":"http://b:9003"}]',
        log_level="error",
        data_dir="/d",
    )
    settings = build_settings(flags, {"GRAFT_LOG_LEVEL": "warn"})
    assert settings.id == 7
    assert settings.listen == "tcp:9007:interface=127.0.0.1"
    assert settings.advertise == "http://127.0.0.1:9007"
    assert settings.snapshot_threshold == 9
    assert settings.peers == (PeerSetting(id=3, address="http://b:9003"),)
    assert settings.log_level == "error"
    assert settings.data_dir == "/d"


def test_environment_wins_over_yaml_but_not_flags(tmp_path):
    path = write(tmp_path, "id: 1\nlisten: tcp:9001\nlog_level: debug\n")
    assert build_settings(NodeFlags(config=path), {"GRAFT_LOG_LEVEL": "warn"}).log_level == "warn"
    flags = NodeFlags(config=path, log_level="fatal")
    assert build_settings(flags, {"GRAFT_LOG_LEVEL": "warn"}).log_level == "fatal"


def test_seed_environment_variable_is_read_and_graft_one_wins():
    flags = NodeFlags(id=1, port=9001)
    assert build_settings(flags, {"GOAMT_LOG_LEVEL": "error"}).log_level == "error"
    both = {"GOAMT_LOG_LEVEL": "error", "GRAFT_LOG_LEVEL": "DEBUG"}
    assert build_settings(flags, both).log_level == "debug"


@pytest.mark.parametrize("name", ["GRAFT_LOG_LEVEL", "GOAMT_LOG_LEVEL"])
def test_unknown_environment_log_level_names_the_valid_ones(name):
    message = error_of(NodeFlags(id=1, port=9001), {name: "loud"})
    assert message == (
        f'{name}: unknown log level "loud"; valid levels: debug, info, warn, error, fatal'
    )


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        (
            "id: 1\nsnapshot_threshold: ten\n",
            'key "snapshot_threshold": expected an integer, got "ten"',
        ),
        ("id: 1\nsnapshot_threshold: -5\n", 'key "snapshot_threshold": expected a positive'),
        ("id: 1\nmax_body_bytes: true\n", 'key "max_body_bytes": expected an integer, got true'),
        ("id: 1\nmax_body_bytes: 0\n", 'key "max_body_bytes": expected a positive integer'),
        ('id: "1"\n', 'key "id": expected an integer, got "1"'),
        ("id: 0\n", 'key "id": expected a positive integer, got 0'),
        ("listen: tcp:9001\n", 'missing key "id"'),
        ("", 'missing key "id"'),
        ("id: 1\nport: 9001\n", 'unknown key "port" (valid keys: id, listen'),
        ("id: 1\nlisten: 'tcp:abc'\n", 'key "listen": bad endpoint description "tcp:abc"'),
        ("id: 1\nlisten: 'nope:1'\n", "Unknown endpoint type"),
        ("id: 1\nadvertise: 'ftp://x:1'\n", 'key "advertise": bad URL "ftp://x:1"'),
        ("id: 1\nadvertise: 'http://x:port'\n", 'key "advertise": bad URL'),
        ("id: 1\nadvertise: 5\n", 'key "advertise": expected a string, got 5'),
        ("id: 1\njoin: 'localhost'\n", 'key "join": bad URL "localhost"'),
        ("id: 1\npeers: {id: 2}\n", 'key "peers": expected a list'),
        ("id: 1\npeers: [{id: 2}]\n", 'key "peers": entry 1: missing "address"'),
        ("id: 1\npeers: [{address: 'http://a:1'}]\n", 'key "peers": entry 1: missing "id"'),
        ("id: 1\npeers: [3]\n", 'key "peers": entry 1: expected {"id": N'),
        (
            "id: 1\npeers: [{id: 2, address: 'http://a:2'}, {id: 2, address: 'http://b:2'}]\n",
            'key "peers": duplicate id 2',
        ),
        ("id: 1\npeers: [{id: -2, address: 'http://a:2'}]\n", 'entry 1: "id": expected a positive'),
        ("id: 1\npeers: [{id: 2, address: 'a:2'}]\n", 'entry 1: "address": bad URL "a:2"'),
        ("id: 1\npeers: [{id: 2, address: 'http://a:2', x: 1}]\n", 'entry 1: unknown key "x"'),
        (
            "id: 1\nlog_level: loud\n",
            'key "log_level": unknown log level "loud"; valid levels: debug, info, warn, error,'
            " fatal",
        ),
        ("id: 1\ntransport: udp\n", 'key "transport": unknown transport "udp"; valid transports'),
        ("id: 1\ntick_seconds: 0\n", 'key "tick_seconds": expected a positive number'),
        ("- 1\n- 2\n", "expected a mapping of keys to values, got a list"),
        ("id: [1\n", "not valid YAML at line"),
    ],
)
def test_bad_yaml_is_one_line_naming_file_and_key(tmp_path, yaml_text, expected):
    path = write(tmp_path, yaml_text)
    message = error_of(NodeFlags(config=path, port=9001))
    assert message.startswith(f"config {path}: ")
    assert expected in message


def test_yaml_example_from_the_brief_reads_exactly(tmp_path):
    path = write(tmp_path, "id: 1\nsnapshot_threshold: ten\n")
    assert error_of(NodeFlags(config=path)) == (
        f'config {path}: key "snapshot_threshold": expected an integer, got "ten"'
    )


def test_unreadable_config_file_is_one_line(tmp_path):
    missing = str(tmp_path / "absent.yaml")
    assert error_of(NodeFlags(config=missing)) == (
        f"config {missing}: cannot read: No such file or directory"
    )


def test_load_config_file_returns_only_the_keys_given(tmp_path):
    path = write(tmp_path, "id: 3\ncluster_token: s3cret\n")
    assert load_config_file(path) == {"id": 3, "cluster_token": "s3cret"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (NodeFlags(port=9001), "missing node id: give --id N"),
        (NodeFlags(id=0, port=9001), "--id: expected a positive integer, got 0"),
        (NodeFlags(id=1), "no address to listen on: give --port P"),
        (NodeFlags(id=1, port=70000), "--port: expected a port number from 1 to 65535"),
        (NodeFlags(id=1, port=9001, peers="[{"), "--peers: not valid JSON: "),
        (NodeFlags(id=1, port=9001, peers='{"id":2}'), "--peers: expected a list"),
        (NodeFlags(id=1, port=9001, advertise="nope"), '--advertise: bad URL "nope"'),
        (NodeFlags(id=1, listen="tcp:x"), '--listen: bad endpoint description "tcp:x"'),
        (NodeFlags(id=1, port=9001, log_level="x"), '--log-level: unknown log level "x"'),
        (NodeFlags(id=1, port=9001, transport="x"), '--transport: unknown transport "x"'),
        (NodeFlags(id=1, port=9001, snapshot_threshold=-1), "--snapshot-threshold: expected a"),
        (NodeFlags(id=1, port=9001, max_body_bytes=0), "--max-body-bytes: expected a positive"),
        (NodeFlags(id=1, listen="unix:/tmp/g.sock"), "give --advertise URL"),
    ],
)
def test_bad_flags_are_one_line_naming_the_flag(flags, expected):
    assert expected in error_of(flags)


def test_listen_flag_replaces_host_and_port():
    flags = NodeFlags(id=1, listen="unix:/tmp/g.sock", advertise="http://h:1")
    settings = build_settings(flags, {})
    assert (settings.listen, settings.advertise) == ("unix:/tmp/g.sock", "http://h:1")


def test_the_shipped_example_configuration_loads() -> None:
    """etc/graft/1.yaml, the file packaging/graft@.service reads, is valid."""
    from pathlib import Path

    from graft.config import load_config_file

    example = Path(__file__).resolve().parents[2] / "etc" / "graft" / "1.yaml"
    loaded = load_config_file(str(example))

    assert loaded["id"] == 1
    assert [p.id for p in loaded["peers"]] == [2, 3]
