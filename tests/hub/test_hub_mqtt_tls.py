"""The hub and the edge agent over MQTT TLS, against a private Mosquitto with the generated
configuration (auth, ACL, packet size) and a TLS listener; certificates made by trustme.

Edge agent → Mosquitto (mqtts://) → hub → PostgreSQL, with passwords and with client
certificates (``require_certificate``: the certificate's CN is the MQTT username); a hub
that does not trust the broker, or has no certificate where one is required, logs why and
keeps retrying; and the broker's ``max_packet_size`` refuses an oversize publish at the
source, so the publisher never gets a PUBACK for a message the hub would never receive.
"""
from __future__ import annotations

import dataclasses
import logging
import ssl
import time
from functools import partial
from pathlib import Path

import pytest
import trio
import trustme
from support.hub_helpers import AgentThread, agent_config, eventually, session_with_device, student
from support.private_mosquitto import (
    HUB_LOGIN,
    BrokerLogin,
    PrivateMosquitto,
    mosquitto_available,
    start_private_mosquitto,
)

from hub.adapters.mosquitto_conf import BrokerTls
from hub.app.supervision import run_hub
from hub.core.campus import Campus
from hub.core.config import MQTT_MAX_PACKET_SIZE, Settings
from hub.db import Database
from hub.mqtt import TrioMqttClient, client_tls_context
from schemas import Topics, issue_checkin_token

pytestmark = pytest.mark.skipif(not mosquitto_available(), reason="mosquitto is not installed")


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    cafile: Path
    directory: Path

    def issue(self, common_name: str) -> tuple[Path, Path]:
        """A client certificate (CN = the MQTT username) and its key, as PEM files."""
        cert = self.ca.issue_cert(common_name, common_name=common_name)
        certfile, keyfile = self.directory / f"{common_name}.crt", self.directory / f"{common_name}.key"
        cert.cert_chain_pems[0].write_to_path(str(certfile))
        cert.private_key_pem.write_to_path(str(keyfile))
        return certfile, keyfile


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return Pki(ca, directory / "ca.pem", directory)


def start_tls_broker(tmp_path: Path, pki: Pki, topics: Topics, devices: list[BrokerLogin],
                     *, require_certificate: bool = False) -> PrivateMosquitto:
    server = pki.ca.issue_cert("127.0.0.1")
    certfile, keyfile = pki.directory / "broker.crt", pki.directory / "broker.key"
    server.cert_chain_pems[0].write_to_path(str(certfile))
    server.private_key_pem.write_to_path(str(keyfile))
    return start_private_mosquitto(tmp_path / "broker", topics=topics, devices=devices,
                                   tls=BrokerTls(pki.cafile, certfile, keyfile, require_certificate))


async def _checkin_over_tls(settings: Settings, campus: Campus, test_db: Database, tmp_path: Path,
                            **agent_tls: object) -> None:
    session, device = session_with_device(campus)
    enrolled = student(campus, session.enrolled[0])
    async with trio.open_nursery() as nursery:
        hub = await nursery.start(partial(run_hub, settings, port=None))
        assert hub.client.connected
        agent = AgentThread(agent_config(
            device, mqtt_url=agent_tls.pop("mqtt_url"), topic_prefix=settings.topic_prefix,  # type: ignore[arg-type]
            outbox=tmp_path / "outbox.sqlite", **agent_tls)).start()
        try:
            await trio.to_thread.run_sync(
                agent.submit_qr, issue_checkin_token(enrolled.student_id, enrolled.token_secret, time.time()))
            row = await eventually(lambda: test_db.fetchrow(
                "SELECT status, source FROM attendance WHERE session_id = $1 AND student_id = $2",
                session.session_id, enrolled.student_id))
            assert dict(row) == {"status": "present", "source": "qr"}
            assert agent.error is None
        finally:
            await trio.to_thread.run_sync(agent.stop)
        nursery.cancel_scope.cancel()


async def test_edge_agent_to_hub_over_tls_with_passwords(hub_settings: Settings, hub_campus: Campus, test_db,
                                                         pki: Pki, tmp_path: Path):
    _, device = session_with_device(hub_campus)
    login = BrokerLogin(device.device_id, "device-password-1")
    topics = Topics(hub_settings.topic_prefix)
    with start_tls_broker(tmp_path, pki, topics, [login]) as broker:
        settings = dataclasses.replace(
            hub_settings, mqtt_url=broker.url(HUB_LOGIN.username, HUB_LOGIN.password, tls=True),
            mqtt_cafile=pki.cafile, hub_client_id=HUB_LOGIN.username)
        with trio.fail_after(30):
            await _checkin_over_tls(settings, hub_campus, test_db, tmp_path,
                                    mqtt_url=broker.url(login.username, login.password, tls=True),
                                    mqtt_cafile=pki.cafile)


async def test_edge_agent_to_hub_with_client_certificates(hub_settings: Settings, hub_campus: Campus, test_db,
                                                          pki: Pki, tmp_path: Path):
    _, device = session_with_device(hub_campus)
    topics = Topics(hub_settings.topic_prefix)
    hub_cert, hub_key = pki.issue(HUB_LOGIN.username)
    device_cert, device_key = pki.issue(device.device_id)
    with start_tls_broker(tmp_path, pki, topics, [BrokerLogin(device.device_id, "unused-with-certificates")],
                          require_certificate=True) as broker:
        tls_url = f"mqtts://127.0.0.1:{broker.tls_port}"  # the certificate is the login
        settings = dataclasses.replace(hub_settings, mqtt_url=tls_url, mqtt_cafile=pki.cafile,
                                       mqtt_certfile=hub_cert, mqtt_keyfile=hub_key, hub_client_id=HUB_LOGIN.username)
        with trio.fail_after(30):
            await _checkin_over_tls(settings, hub_campus, test_db, tmp_path, mqtt_url=tls_url,
                                    mqtt_cafile=pki.cafile, mqtt_certfile=device_cert, mqtt_keyfile=device_key)


@pytest.mark.parametrize("mistake", ["untrusted broker certificate", "no client certificate"])
async def test_hub_that_cannot_connect_logs_why_and_keeps_retrying(hub_settings: Settings, hub_campus: Campus,
                                                                   pki: Pki, tmp_path: Path, mistake: str,
                                                                   caplog: pytest.LogCaptureFixture):
    topics = Topics(hub_settings.topic_prefix)
    with start_tls_broker(tmp_path, pki, topics, [], require_certificate=True) as broker:
        if mistake == "untrusted broker certificate":
            other = trustme.CA()
            other.cert_pem.write_to_path(str(tmp_path / "other-ca.pem"))
            hub_cert, hub_key = pki.issue(HUB_LOGIN.username)
            tls = dict(mqtt_cafile=tmp_path / "other-ca.pem", mqtt_certfile=hub_cert, mqtt_keyfile=hub_key)
            expected = "broker certificate not trusted: self-signed certificate in certificate chain"
        else:
            tls = dict(mqtt_cafile=pki.cafile)
            expected = "does its listener require a client certificate"
        settings = dataclasses.replace(hub_settings, mqtt_url=f"mqtts://127.0.0.1:{broker.tls_port}",
                                       hub_client_id=HUB_LOGIN.username, **tls)
        with caplog.at_level(logging.WARNING, logger="hub.mqtt"):
            async with trio.open_nursery() as nursery:
                with trio.move_on_after(2.5) as waited:
                    await nursery.start(partial(run_hub, settings, port=None))
                assert waited.cancelled_caught, "the hub must not report started without its broker"
                nursery.cancel_scope.cancel()
    failures = [r.getMessage() for r in caplog.records if expected in r.getMessage()]
    assert len(failures) >= 2 and all("retrying" in m for m in failures), caplog.text


async def test_broker_refuses_an_oversize_publish_at_the_source(hub_settings: Settings, pki: Pki, tmp_path: Path):
    """The generated ``max_packet_size`` equals the hub's Maximum Packet Size: a packet the hub
    could not take is refused when published (MQTT 5: DISCONNECT 0x95, no PUBACK), so an edge
    agent keeps it in its outbox instead of deleting it for a message the hub never gets."""
    login = BrokerLogin("dev-oversize", "device-password-2")
    topics = Topics(hub_settings.topic_prefix)
    with start_tls_broker(tmp_path, pki, topics, [login]) as broker:
        device = TrioMqttClient(host="127.0.0.1", port=broker.tls_port, client_id=login.username,
                                username=login.username, password=login.password, clean_start=True,
                                tls=client_tls_context(pki.cafile))
        async with trio.open_nursery() as nursery:
            await nursery.start(device.run)
            await device.publish(topics.uplink(login.username), b"x" * 100, qos=1, wait_for_ack=True)
            with trio.move_on_after(2) as no_puback:
                await device.publish(topics.uplink(login.username), b"x" * MQTT_MAX_PACKET_SIZE,
                                     qos=1, wait_for_ack=True)
            assert no_puback.cancelled_caught  # never acknowledged: still the publisher's to keep
            assert device.stats.reconnects >= 1  # the broker dropped the connection (paho resends: again)
            nursery.cancel_scope.cancel()


def test_mqtt_url_and_settings_for_tls(tmp_path: Path) -> None:
    from hub.core.config import MqttUrl

    url = MqttUrl.parse("mqtts://hub:pw@broker.example")
    assert (url.tls, url.port, str(url)) == (True, 8883, "mqtts://broker.example:8883")
    assert MqttUrl.parse("mqtt://broker.example").port == 1883 and not MqttUrl.parse("mqtt://b").tls
    with pytest.raises(ValueError) as error:
        MqttUrl.parse("http://hub:s3cret@broker.example")
    assert "s3cret" not in str(error.value)
    env = {"CAMPUSHUB_MQTT_URL": "mqtts://broker.example", "CAMPUSHUB_MQTT_CAFILE": "/etc/campushub/ca.pem",
           "CAMPUSHUB_MQTT_CERTFILE": "/etc/campushub/hub.crt", "CAMPUSHUB_MQTT_KEYFILE": "/etc/campushub/hub.key"}
    settings = Settings.from_env(env)
    assert (settings.mqtt_cafile, settings.mqtt_keyfile) == (Path("/etc/campushub/ca.pem"), Path("/etc/campushub/hub.key"))
    with pytest.raises(ValueError, match="not mqtts://"):
        Settings.from_env({**env, "CAMPUSHUB_MQTT_URL": "mqtt://broker.example"})
    with pytest.raises(ValueError, match="needs CAMPUSHUB_MQTT_CERTFILE"):
        Settings.from_env({**env, "CAMPUSHUB_MQTT_CERTFILE": ""})
    assert Settings(mqtt_url="mqtt://broker.example").mqtt_tls_context() is None


@pytest.mark.parametrize("reason", ["TLSV13_ALERT_CERTIFICATE_REQUIRED", None])
def test_missing_client_certificate_is_named_in_either_form_tls_reports_it(reason: str | None):
    """Under TLS 1.3 the broker's refusal arrives as an alert or as a bare EOF, by timing."""
    from hub.mqtt._tls import NO_CLIENT_CERT_HINT, describe_tls_error
    if reason is None:
        exc: ssl.SSLError = ssl.SSLEOFError(8, "EOF occurred in violation of protocol")
    else:
        exc = ssl.SSLError(1, f"[SSL: {reason}] tlsv13 alert certificate required")
        exc.reason = reason
    assert NO_CLIENT_CERT_HINT in describe_tls_error(exc)
    assert NO_CLIENT_CERT_HINT not in describe_tls_error(ssl.SSLError(1, "other"))
