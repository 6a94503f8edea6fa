"""The `twist graft` plugin: discovery, flags, and one-line config errors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from twisted.application.service import IServiceMaker, MultiService
from twisted.plugin import IPlugin, getPlugins
from twisted.python import usage
from zope.interface.verify import verifyObject

import graft.server
from graft.server.settings import NodeSettings, PeerSetting


def graft_maker() -> IServiceMaker:
    [maker] = [p for p in getPlugins(IServiceMaker) if p.tapname == "graft"]
    return maker


def parse(*args: str) -> usage.Options:
    options = graft_maker().options()
    options.parseOptions(list(args))
    return options


@pytest.fixture(autouse=True)
def no_log_level_environment(monkeypatch):
    monkeypatch.delenv("GRAFT_LOG_LEVEL", raising=False)
    monkeypatch.delenv("GOAMT_LOG_LEVEL", raising=False)


def test_plugin_is_discovered_as_graft():
    maker = graft_maker()
    assert verifyObject(IServiceMaker, maker)
    assert verifyObject(IPlugin, maker)
    assert "graft" in maker.description


def test_config_file_builds_settings(tmp_path):
    config = tmp_path / "1.yaml"
    config.write_text(
        'id: 1\nlisten: "tcp:9001:interface=127.0.0.1"\ndata_dir: /var/lib/graft/1\n'
        "peers: [{id: 2, address: 'http://127.0.0.1:9002'}]\n"
    )
    options = parse("--config", str(config))
    assert options.settings == NodeSettings(
        id=1,
        listen="tcp:9001:interface=127.0.0.1",
        advertise="http://127.0.0.1:9001",
        data_dir="/var/lib/graft/1",
        peers=(PeerSetting(id=2, address="http://127.0.0.1:9002"),),
    )


def test_flags_mirror_node_run_and_win_over_the_file(tmp_path):
    config = tmp_path / "1.yaml"
    config.write_text("id: 1\nlisten: tcp:9001\nadvertise: http://n:9001\n")
    options = parse(
        "--config", str(config), "--id", "3", "--port", "9003", "--snapshot-threshold", "7",
        "--peers", '[{"id":1,"address":"http://n:9001"}]', "--log-level", "warn",
    )  # fmt: skip
    settings = options.settings
    assert (settings.id, settings.listen) == (3, "tcp:9003:interface=127.0.0.1")
    assert settings.snapshot_threshold == 7
    assert settings.peers == (PeerSetting(id=1, address="http://n:9001"),)
    assert settings.log_level == "warn"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--id", "x", "--port", "1"), "--id: expected an integer, got 'x'"),
        (("--port", "1"), "missing node id: give --id N (or the id key in --config)"),
        (("--id", "1", "--port", "1", "--peers", "nope"), "--peers: not valid JSON: "),
    ],
)
def test_bad_flags_raise_usage_error_with_one_line(args, message):
    with pytest.raises(usage.UsageError) as info:
        parse(*args)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_make_service_calls_make_node_service(monkeypatch):
    made = []
    owns = []

    def make_node_service(settings, reactor, own_process=False):
        made.append(settings)
        owns.append(own_process)
        return MultiService()

    monkeypatch.setattr(graft.server, "make_node_service", make_node_service, raising=False)
    options = parse("--id", "1", "--port", "9001")
    service = graft_maker().makeService(options)
    assert isinstance(service, MultiService)
    assert made == [options.settings]
    assert owns == [True]  # the daemon's node has the process to itself


def test_twist_prints_config_errors_without_traceback(tmp_path):
    config = tmp_path / "1.yaml"
    config.write_text("id: 1\nbogus: 2\n")
    twist = os.path.join(os.path.dirname(sys.executable), "twist")
    result = subprocess.run(
        [twist, "graft", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f'Error: config {config}: unknown key "bogus"' in output
    assert "Traceback" not in output
