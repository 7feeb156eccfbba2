"""The edge agent's TLS settings: ``mqtts://`` URLs, CA and client certificate files.

The agent over TLS to a real Mosquitto, end to end with the hub: tests/hub/test_hub_mqtt_tls.py.
"""
from __future__ import annotations

import ssl
from pathlib import Path

import pytest
import trustme
from edge_helpers import make_config

from edge_agent.config import ConfigError, config_from_mapping, parse_mqtt_url

BASE = {"device_id": "room-1-edge", "room_id": "room-1", "alg": "hmac-sha256", "signing_key": "ab" * 16}


def test_mqtts_url_means_tls_on_port_8883_by_default() -> None:
    assert parse_mqtt_url("mqtts://u:p@broker.example").port == 8883
    assert parse_mqtt_url("mqtts://u:p@broker.example").tls is True
    assert parse_mqtt_url("mqtt://broker.example").port == 1883
    assert parse_mqtt_url("mqtt://broker.example").tls is False


def test_url_errors_do_not_echo_the_password() -> None:
    with pytest.raises(ConfigError) as error:
        parse_mqtt_url("https://user:s3cret@broker.example")
    assert "s3cret" not in str(error.value)


def test_tls_files_are_resolved_read_and_checked_at_load(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    issued = ca.issue_cert("room-1-edge")
    issued.cert_chain_pems[0].write_to_path(str(tmp_path / "dev.crt"))
    issued.private_key_pem.write_to_path(str(tmp_path / "dev.key"))
    cfg = config_from_mapping({**BASE, "mqtt_url": "mqtts://broker.example", "mqtt_cafile": "ca.pem",
                               "mqtt_certfile": "dev.crt", "mqtt_keyfile": "dev.key"}, base_dir=tmp_path)
    assert cfg.mqtt_cafile == tmp_path / "ca.pem" and cfg.endpoint.tls
    context = cfg.mqtt_tls_context()
    assert isinstance(context, ssl.SSLContext) and context.check_hostname
    assert context.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize(("extra", "message"), [
    ({"mqtt_url": "mqtt://broker.example", "mqtt_cafile": "ca.pem"}, "not mqtts://"),
    ({"mqtt_url": "mqtts://broker.example", "mqtt_keyfile": "k.pem"}, "needs mqtt_certfile"),
    ({"mqtt_url": "mqtts://broker.example", "mqtt_cafile": "missing.pem"}, "mqtt_cafile: unusable"),
    ({"mqtt_url": "mqtts://broker.example", "mqtt_cafile": "garbage.pem"}, "mqtt_cafile: unusable"),
])
def test_tls_mistakes_are_config_errors(tmp_path: Path, extra: dict, message: str) -> None:
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=message):
        config_from_mapping({**BASE, **extra}, base_dir=tmp_path)


def test_plain_config_has_no_tls_context(tmp_path: Path) -> None:
    assert make_config(tmp_path, "p", mqtt_url="mqtt://127.0.0.1:1883").mqtt_tls_context() is None
