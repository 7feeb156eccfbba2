"""The ``[[devices]]`` part of the agent's TOML file, pushed overrides, and sealed enrolment data."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from devices.fingerprint.r30x import R30xSource
from devices.qr.camera import ImageDirectoryFrames, QrCameraSource, RawVideoFrames
from devices.qr.source import QrLineSource
from devices.sensor.serial_line import SerialLineSensorSource
from edge_agent.config import ConfigError, load_config
from edge_agent.device_config import DeviceConfigError, with_overrides
from edge_agent.drivers import build_device_source
from edge_agent.enrolment import Enrolment, KeyStoreError
from edge_agent.state import AgentState

BASE = '''device_id = "room-101-edge"
room_id = "room-101"
alg = "hmac-sha256"
signing_key = "00112233445566778899aabbccddeeff"
'''

FULL = BASE + '''
[[sources]]
type = "simulated_sensor"

[[devices]]
name = "door-camera"
kind = "qr"
driver = "camera"
path = "snapshots"
[devices.options]
debounce_s = 3
delete_after = true

[[devices]]
name = "usb-camera"
kind = "qr"
driver = "camera"
device = "/dev/video0"
[devices.options]
width = 320
height = 240

[[devices]]
name = "door-fp"
kind = "fingerprint"
driver = "r30x"
port = "/dev/serial/by-id/usb-FTDI-if00"
[devices.options]
min_score = 0.25
password = 0x1234

[[devices]]
kind = "sensor"
driver = "serial_line"
port = "/dev/ttyACM0"
[devices.options]
baudrate = 115200
aliases = { p = ["pressure", "hPa"] }

[[devices]]
name = "gate"
kind = "terminal"
driver = "zkteco_adms"
[devices.options]
listen_port = 8081
timezone = 5.5
serial_numbers = ["CKJF201260057"]

[[devices]]
name = "wedge"
kind = "qr"
driver = "lines"
path = "-"
'''


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(text)
    return path


def test_full_device_list(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    names = [d.name for d in cfg.devices]
    assert names == ["door-camera", "usb-camera", "door-fp", "sensor-3", "gate", "wedge"]
    cam, usb, fp, sensor, gate, wedge = cfg.devices
    assert cam.path == str(tmp_path / "snapshots") and cam.options["debounce_s"] == 3.0
    assert cam.options["delete_after"] is True and cam.options["interval_s"] == 0.2  # default filled in
    assert usb.port == "/dev/video0" and usb.options["width"] == 320
    assert fp.options["min_score"] == 0.25 and fp.options["password"] == 0x1234 and fp.options["baudrate"] == 57600
    assert sensor.options["aliases"] == {"p": ["pressure", "hPa"]}
    assert gate.options["timezone"] == 5.5 and gate.options["listen"] == "0.0.0.0"
    assert wedge.path == "-"
    assert len(cfg.sources) == 1  # the old [[sources]] form still works beside [[devices]]
    assert cfg.state_file == tmp_path / "room-101-edge.state.sqlite"
    assert cfg.key_store_file == tmp_path / "room-101-edge.keys.json"

    built = [build_device_source(d) for d in (cam, usb, fp, sensor, wedge)]
    assert [type(b) for b in built] == [QrCameraSource, QrCameraSource, R30xSource, SerialLineSensorSource,
                                        QrLineSource]
    assert isinstance(built[0].source, ImageDirectoryFrames) and built[0].debounce_s == 3.0
    assert isinstance(built[1].source, RawVideoFrames) and built[1].source.argv[0] == "ffmpeg"
    assert "/dev/video0" in built[1].source.argv
    assert built[2].min_score == 0.25 and built[2].link.baudrate == 57600
    assert built[3].parser.aliases["p"] == ("pressure", "hPa")


@pytest.mark.parametrize(("device", "line", "message"), [
    ('kind = "printer"\ndriver = "x"', 7, "devices[0].kind: expected one of fingerprint, qr, sensor, terminal"),
    ('kind = "qr"\ndriver = "r30x"', 8, "devices[0].driver: qr drivers are camera, lines"),
    ('kind = "fingerprint"\ndriver = "r30x"', 6, "devices[0].port: fingerprint/r30x needs exactly one port"),
    ('kind = "fingerprint"\ndriver = "r30x"\nport = "/dev/x"\npath = "y"', 10, "devices[0].path: not used"),
    ('kind = "fingerprint"\ndriver = "r30x"\nport = "/dev/x"\ncolour = 1', 10, "devices[0].colour: unknown key"),
    ('kind = "fingerprint"\ndriver = "r30x"\nport = "/dev/x"\n[devices.options]\nbaudrate = 1234', 11,
     "devices[0].options.baudrate: must be one of"),
    ('kind = "fingerprint"\ndriver = "r30x"\nport = "/dev/x"\n[devices.options]\nmin_score = "high"', 11,
     "devices[0].options.min_score: expected number, got str"),
    ('kind = "fingerprint"\ndriver = "r30x"\nport = "/dev/x"\n[devices.options]\nspeed = 2', 11,
     "devices[0].options.speed: unknown option for fingerprint/r30x"),
    ('kind = "sensor"\ndriver = "simulated"\n[devices.options]\nmetrics = ["pressure"]', 10,
     "devices[0].options.metrics: must be a non-empty array"),
    ('kind = "terminal"\ndriver = "zkteco_adms"\n[devices.options]\ntimezone = 5.3', 10,
     "devices[0].options.timezone: must be hours from UTC"),
    ('kind = "qr"\ndriver = "camera"\npath = "a"\ndevice = "/dev/video0"', 9, "needs exactly one device or path"),
    ('name = "Bad Name"\nkind = "qr"\ndriver = "lines"\npath = "-"', 7, "devices[0].name: must match"),
])
def test_errors_name_file_line_and_key(tmp_path: Path, device: str, line: int, message: str) -> None:
    path = write(tmp_path, BASE + "\n[[devices]]\n" + device + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert text.startswith(f"{path}:{line}: ") and message in text, text


def test_errors_in_a_later_device_point_at_its_own_lines(tmp_path: Path) -> None:
    text = (BASE + '\n[[devices]]\nname = "a"\nkind = "qr"\ndriver = "lines"\npath = "-"\n'
            '\n[[devices]]\nname = "a"\nkind = "qr"\ndriver = "lines"\npath = "x"\n')
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=rf"^{path}:13: devices\[1\].name: 'a' is also devices\[0\]"):
        load_config(path)
    with pytest.raises(ConfigError, match="devices: expected an array of tables"):
        load_config(write(tmp_path, BASE + "devices = 3\n"))


def test_pushable_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, FULL))
    updated = with_overrides(cfg.devices, {"door-fp.min_score": 0.5, "gate.timezone": -3})
    assert updated[2].options["min_score"] == 0.5 and updated[4].options["timezone"] == -3.0
    assert cfg.devices[2].options["min_score"] == 0.25  # the original is untouched
    for bad, message in [({"door-fp.baudrate": 9600}, "cannot be pushed"),
                         ({"nobody.min_score": 1}, "no device named"),
                         ({"door-fp.min_score": 7}, "must be 0..1"),
                         ({"door-fp": 1}, "expected <device>.<option>")]:
        with pytest.raises(DeviceConfigError, match=message):
            with_overrides(cfg.devices, bad)


def test_enrolment_is_sealed_at_rest_and_the_key_rotates(tmp_path: Path) -> None:
    state = AgentState(tmp_path / "state.sqlite")
    keys = tmp_path / "keys.json"
    enrol = Enrolment(state, keys)
    enrol.update_roster(pins={"1001": "student-alice"}, pages={7: "student-alice"})
    enrol.put_template(9, "student-bob", b"TEMPLATE-BYTES" * 10)
    assert os.stat(keys).st_mode & 0o777 == 0o600
    raw = (tmp_path / "state.sqlite").read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("state.sqlite-*"))
    assert b"student-alice" not in raw and b"TEMPLATE-BYTES" not in raw  # only ciphertext on disk
    first_kid = json.loads(keys.read_text())["current"]

    new_kid = enrol.rotate_key()
    ring = json.loads(keys.read_text())
    assert new_kid != first_kid and list(ring["keys"]) == [new_kid]  # the old key is gone
    assert {kid for _, kid, _, _ in state.sealed_rows()} == {new_kid}

    again = Enrolment(state, keys)  # a restart reads everything back under the new key
    assert again.pins == {"1001": "student-alice"} and again.pages == {7: "student-alice", 9: "student-bob"}
    assert again.template(9) == b"TEMPLATE-BYTES" * 10
    again.delete_template(9)
    assert again.template(9) is None and 9 not in again.pages

    # Tampering is detected, not silently read.
    name, kid, nonce, data = state.sealed_rows()[0]
    state.put_sealed([(name, kid, nonce, bytes([data[0] ^ 1]) + data[1:])])
    with pytest.raises(KeyStoreError, match="fails authentication"):
        Enrolment(state, keys)
    state.close()


def test_cli_rotates_the_storage_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from edge_agent.cli import main

    path = write(tmp_path, BASE)
    cfg = load_config(path)
    state = AgentState(cfg.state_file)
    Enrolment(state, cfg.key_store_file).update_roster(pins={"1": "s-1"})
    state.close()
    before = json.loads(cfg.key_store_file.read_text())["current"]
    assert main(["--config", str(path), "--rotate-storage-key"]) == 0
    after = json.loads(cfg.key_store_file.read_text())["current"]
    assert after != before and f"under key {after}" in capsys.readouterr().err
    state = AgentState(cfg.state_file)
    assert Enrolment(state, cfg.key_store_file).pins == {"1": "s-1"}
    state.close()
    cfg.key_store_file.write_text("not json")
    assert main(["--config", str(path), "--rotate-storage-key"]) == 2
    assert "unreadable key store" in capsys.readouterr().err
