"""Device credentials: key material, Mosquitto's password hash format, the edge-agent snippet."""
from __future__ import annotations

import base64
import shutil
import subprocess
import tomllib
from itertools import count
from pathlib import Path

import pytest

from edge_agent.config import load_config
from hub.domain.credentials import (
    MOSQUITTO_ITERATIONS,
    ed25519_public_key,
    edge_agent_toml,
    mosquitto_hash,
    mosquitto_verify,
    new_device_credentials,
    new_mqtt_password,
    new_signing_keys,
)
from schemas import Heartbeat, HeartbeatEvent, decode_frame, encode_event, new_event_id, verify


def counting_rng():
    """Deterministic 'random' bytes: 0, 1, 2, ... so two calls never repeat."""
    n = count()
    return lambda size: bytes(next(n) % 256 for _ in range(size))


def _signed_by(keys) -> bytes:
    event = HeartbeatEvent(v=1, id=new_event_id(), device="d1", ts=1, seq=1,
                           body=Heartbeat(uptime_s=1, firmware="x", outbox_depth=0))
    return encode_event(event, keys.alg, keys.device_key)


def test_hmac_keys_are_32_random_bytes_shared_by_device_and_hub():
    keys = new_signing_keys("hmac-sha256")
    assert len(keys.device_key) == 32 and keys.device_key == keys.stored_key
    assert new_signing_keys("hmac-sha256").device_key != keys.device_key
    frame, _ = decode_frame(_signed_by(keys))
    verify(frame, keys.stored_key)  # the hub verifies with what it stores


def test_ed25519_hub_stores_only_the_public_key_and_it_verifies():
    keys = new_signing_keys("ed25519")
    assert len(keys.device_key) == 32 and len(keys.stored_key) == 32
    assert keys.stored_key != keys.device_key
    assert ed25519_public_key(keys.device_key) == keys.stored_key
    frame, _ = decode_frame(_signed_by(keys))
    verify(frame, keys.stored_key)


def test_unknown_algorithm_is_refused():
    with pytest.raises(ValueError, match="unknown signature algorithm"):
        new_signing_keys("rsa")


def test_mosquitto_hash_format_matches_mosquitto_passwd():
    encoded = mosquitto_hash("s3cret")
    empty, seven, iterations, salt, derived = encoded.split("$")
    assert (empty, seven, int(iterations)) == ("", "7", MOSQUITTO_ITERATIONS)
    assert len(base64.b64decode(salt)) == 12 and len(base64.b64decode(derived)) == 64
    assert mosquitto_verify("s3cret", encoded)
    assert not mosquitto_verify("s3cret!", encoded)
    assert mosquitto_hash("s3cret") != encoded  # a fresh salt every time


def test_mosquitto_hash_is_deterministic_for_a_given_salt():
    a = mosquitto_hash("pw", rng=counting_rng())
    b = mosquitto_hash("pw", rng=counting_rng())
    assert a == b and mosquitto_verify("pw", a)


@pytest.mark.parametrize("bad", ["", "plain", "$6$1$a$b", "$7$x$AAAA$AAAA", "$7$1$!!$AAAA"])
def test_mosquitto_verify_rejects_malformed_hashes(bad):
    assert not mosquitto_verify("pw", bad)


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="mosquitto_passwd not installed")
def test_we_verify_what_mosquitto_passwd_writes(tmp_path: Path):
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "dev-1", "hunter2"], check=True)
    username, encoded = path.read_text().strip().split(":", 1)
    assert username == "dev-1"
    assert mosquitto_verify("hunter2", encoded) and not mosquitto_verify("hunter3", encoded)


def test_mqtt_passwords_are_long_random_and_file_safe():
    passwords = {new_mqtt_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert len(password) == 32 and ":" not in password and '"' not in password and "\\" not in password


def test_device_credentials_name_the_broker_account_after_the_device():
    creds = new_device_credentials("room-101-edge", "hmac-sha256")
    assert creds.mqtt.username == "room-101-edge"
    assert mosquitto_verify(creds.mqtt.password, creds.mqtt.password_hash)
    assert creds.mqtt.password not in creds.mqtt.password_hash


@pytest.mark.parametrize("alg", ["hmac-sha256", "ed25519"])
def test_the_edge_agent_snippet_is_a_valid_agent_config(tmp_path: Path, alg):
    creds = new_device_credentials("room-101-edge", alg)
    hub_key = new_signing_keys("ed25519").stored_key
    text = edge_agent_toml(device_id="room-101-edge", room_id="room-101", credentials=creds,
                           mqtt_url="mqtt://broker.campus:1883", topic_prefix="campushub", hub_public_key=hub_key)
    data = tomllib.loads(text)
    assert data["signing_key"] == creds.keys.device_key.hex()
    assert (data["username"], data["password"]) == ("room-101-edge", creds.mqtt.password)
    assert (hub_key.hex() in text) == (alg == "ed25519")
    path = tmp_path / "agent.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.device_id == "room-101-edge" and config.alg == alg
    assert config.signing_key == creds.keys.device_key
    assert config.hub_public_key == (hub_key if alg == "ed25519" else None)
