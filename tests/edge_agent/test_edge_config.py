"""Agent configuration: the TOML file, its validation, and the CLI's exit codes."""
from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config import (
    AgentConfig,
    ConfigError,
    QrLinesSourceConfig,
    SimulatedSensorSourceConfig,
    load_config,
)

KEY = "00112233445566778899aabbccddeeff"
BASE = f'''
device_id = "room-101-edge"
room_id = "room-101"
alg = "hmac-sha256"
signing_key = "{KEY}"
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_full_example(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "dev.key").write_text("ab" * 32 + "\n")
    cfg = load_config(write(tmp_path, '''
device_id = "room-101-edge"
room_id = "room-101"
alg = "ed25519"
key_file = "keys/dev.key"
mqtt_url = "mqtt://user:secret@broker.local:8883"
password = "override"
topic_prefix = "campus-a"
outbox = "state/outbox.sqlite"
heartbeat_interval_s = 5
firmware = "edge/9"
max_inflight = 4

[[sources]]
type = "qr_lines"
path = "-"

[[sources]]
type = "qr_lines"
path = "scans.txt"

[[sources]]
type = "simulated_sensor"
interval_s = 0.5
metrics = ["co2"]
seed = 3
'''))
    assert cfg.signing_key == bytes.fromhex("ab" * 32) and cfg.alg == "ed25519"
    assert cfg.outbox_path == tmp_path / "state" / "outbox.sqlite"
    assert cfg.heartbeat_interval_s == 5.0 and cfg.firmware == "edge/9" and cfg.max_inflight == 4
    ep = cfg.endpoint
    assert (ep.host, ep.port, ep.username, ep.password) == ("broker.local", 8883, "user", "override")
    assert cfg.sources == (
        QrLinesSourceConfig("-"),
        QrLinesSourceConfig(str(tmp_path / "scans.txt")),
        SimulatedSensorSourceConfig(0.5, ("co2",), 3),
    )
    assert cfg.mqtt_client_id == "campus-a/edge/room-101-edge"
    assert "ab" * 32 not in repr(cfg) and "override" not in repr(cfg)  # no secrets in logs


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, BASE))
    assert cfg.topic_prefix == "campushub" and cfg.heartbeat_interval_s == 15.0
    assert cfg.mqtt_url == "mqtt://127.0.0.1:1883" and cfg.sources == ()
    assert cfg.outbox_path == tmp_path / "room-101-edge.outbox.sqlite"


@pytest.mark.parametrize(("extra", "message"), [
    ('\nmqtt_urll = "x"', "unknown keys: mqtt_urll"),
    ('\nheartbeat_interval_s = "fast"', "heartbeat_interval_s: expected"),
    ('\nheartbeat_interval_s = 0', "heartbeat_interval_s: must be > 0"),
    ('\nmax_inflight = true', "max_inflight: expected integer, got a boolean"),
    ('\nmqtt_url = "http://x"', "mqtt_url"),
    ('\nmqtt_url = "mqtt://h:99999"', "mqtt_url"),
    ('\ntopic_prefix = "a/#"', "topic_prefix"),
    ('\nkey_file = "k"', "exactly one of signing_key"),
    ('\n[[sources]]\ntype = "camera"', "sources[0].type"),
    ('\n[[sources]]\ntype = "qr_lines"', "sources[0].path: required"),
    ('\n[[sources]]\ntype = "simulated_sensor"\nmetrics = ["pressure"]', "sources[0].metrics"),
    ('\n[[sources]]\ntype = "simulated_sensor"\ncolour = 1', "unknown keys"),
    ('\nsources = 3', "sources: expected an array"),
])
def test_config_errors_name_the_key(tmp_path: Path, extra: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(write(tmp_path, BASE + extra))


@pytest.mark.parametrize(("text", "message"), [
    (BASE.replace('device_id = "room-101-edge"', ""), "device_id: required"),
    (BASE.replace('"room-101-edge"', '"bad id!"'), "device_id"),
    (BASE.replace("hmac-sha256", "rsa"), "alg: must be one of"),
    (BASE.replace(KEY, "zz"), "signing_key: not valid hex"),
    (BASE.replace(KEY, "0011"), "HMAC key needs >= 16 bytes"),
    (BASE.replace("hmac-sha256", "ed25519"), "ed25519 seed is 32 bytes"),
    (BASE.replace(f'signing_key = "{KEY}"', 'key_file = "missing.key"'), "key_file: cannot read"),
    ("device_id = ", "invalid TOML"),
])
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, text))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml")


def test_programmatic_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="max_outbox_rows"):
        AgentConfig("d", "r", "hmac-sha256", b"k" * 16, max_outbox_rows=0)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--config" in capsys.readouterr().out
    assert main([]) == 2  # --config is required
    assert "required" in capsys.readouterr().err
    assert main(["--config", str(tmp_path / "nope.toml")]) == 2
    assert "config error: cannot read" in capsys.readouterr().err
    bad = write(tmp_path, BASE.replace("hmac-sha256", "rsa"))
    assert main(["--config", str(bad)]) == 2
    assert f"config error: {bad}:4: alg" in capsys.readouterr().err  # file, line, key


def test_cli_refuses_another_devices_outbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_agent.outbox import Outbox

    Outbox(tmp_path / "o.sqlite", device_id="someone-else").close()
    path = write(tmp_path, BASE + '\noutbox = "o.sqlite"\n')
    assert main(["--config", str(path)]) == 2
    assert "someone-else" in capsys.readouterr().err
