"""Device credentials: signing keys, MQTT passwords in Mosquitto's own hash format, the edge-agent snippet.

Pure: no I/O and no clock. Randomness comes from an injectable ``rng``
(``secrets.token_bytes`` by default), so tests can make it deterministic.

What a device gets at registration (and again at each rotation):

- ``hmac-sha256``: a 32-byte random secret. The hub stores it too (it must
  verify HMACs) and signs the device's commands with it.
- ``ed25519``: a key pair. The private seed is returned once and never
  stored; the hub keeps only the public key. Commands to such a device are
  signed with the hub's own Ed25519 key, whose public key the device is
  given (``hub_public_key``).
- an MQTT account: username (the device id) and a random password, stored
  only as Mosquitto's PBKDF2-SHA512 hash (``$7$...``, what
  ``mosquitto_passwd`` writes), so the broker's password file is generated
  from the registry without any external binary.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from schemas import SignatureAlgorithm

Rng = Callable[[int], bytes]

ALGORITHMS: tuple[SignatureAlgorithm, ...] = ("hmac-sha256", "ed25519")
#: mosquitto_passwd (2.0) writes 101 iterations and a 12-byte salt; the broker reads the
#: count from each line. The password is 24 random bytes, so the iteration count adds
#: nothing to its strength: keep the broker's cost per CONNECT at its own default.
MOSQUITTO_ITERATIONS = 101
MOSQUITTO_SALT_BYTES = 12
MQTT_PASSWORD_BYTES = 24


@dataclass(frozen=True)
class SigningKeys:
    alg: SignatureAlgorithm
    #: What the device signs with: the HMAC secret or the Ed25519 private seed. Shown once.
    device_key: bytes
    #: What the hub stores and verifies with: the HMAC secret or the Ed25519 public key.
    stored_key: bytes


@dataclass(frozen=True)
class MqttAccount:
    username: str
    #: Shown once, never stored.
    password: str
    password_hash: str


@dataclass(frozen=True)
class DeviceCredentials:
    """Everything generated for one device at registration or rotation."""

    keys: SigningKeys
    mqtt: MqttAccount


def new_signing_keys(alg: str, rng: Rng = secrets.token_bytes) -> SigningKeys:
    """Fresh key material for ``alg``; raises ``ValueError`` for an unknown algorithm."""
    if alg == "hmac-sha256":
        secret = rng(32)
        return SigningKeys("hmac-sha256", secret, secret)
    if alg == "ed25519":
        seed = rng(32)
        public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return SigningKeys("ed25519", seed, public)
    raise ValueError(f"unknown signature algorithm {alg!r} (known: {', '.join(ALGORITHMS)})")


def ed25519_public_key(seed: bytes) -> bytes:
    """The raw 32-byte public key of an Ed25519 private ``seed``."""
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def new_mqtt_password(rng: Rng = secrets.token_bytes) -> str:
    # urlsafe base64: no ':' (the password file's separator) and nothing a TOML string must escape.
    return base64.urlsafe_b64encode(rng(MQTT_PASSWORD_BYTES)).decode().rstrip("=")


def mosquitto_hash(password: str, rng: Rng = secrets.token_bytes, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """``password`` hashed as Mosquitto's password file stores it: ``$7$<iterations>$<salt>$<hash>``.

    PBKDF2-HMAC-SHA512, 64-byte derived key, standard base64 of the raw salt
    and key (byte-for-byte what ``mosquitto_passwd -b`` produces for the same salt).
    """
    if iterations < 1:
        raise ValueError("iterations must be at least 1")
    salt = rng(MOSQUITTO_SALT_BYTES)
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(derived).decode()}"


def mosquitto_verify(password: str, encoded: str) -> bool:
    """True if ``password`` matches a ``$7$`` hash (as the broker checks a CONNECT)."""
    parts = encoded.split("$")
    if len(parts) != 5 or parts[0] or parts[1] != "7" or not parts[2].isdigit():
        return False
    try:
        salt = base64.b64decode(parts[3], validate=True)
        expected = base64.b64decode(parts[4], validate=True)
    except ValueError:
        return False
    derived = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, int(parts[2]), len(expected) or 64)
    return hmac.compare_digest(derived, expected)


def new_mqtt_account(username: str, rng: Rng = secrets.token_bytes) -> MqttAccount:
    password = new_mqtt_password(rng)
    return MqttAccount(username, password, mosquitto_hash(password, rng))


def new_device_credentials(device_id: str, alg: str, rng: Rng = secrets.token_bytes) -> DeviceCredentials:
    """Signing keys for ``alg`` and an MQTT account named after the device."""
    return DeviceCredentials(new_signing_keys(alg, rng), new_mqtt_account(device_id, rng))


def _toml_string(value: str) -> str:
    # Every value here is an id, a URL or hex/base64: escaping '\' and '"' is all TOML needs.
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def edge_agent_toml(
    *, device_id: str, room_id: str, credentials: DeviceCredentials, mqtt_url: str, topic_prefix: str,
    hub_public_key: bytes | None = None,
) -> str:
    """A ready-to-use edge-agent config (edge_agent/config.py) for a freshly provisioned device.

    ``mqtt_url`` is the broker as the device reaches it, without credentials
    (they are separate keys). For ed25519 devices it includes
    ``hub_public_key``, the hub's command-signing key the agent verifies
    commands with.
    """
    lines = [
        "# CampusHub edge agent; generated at provisioning. Keep this file secret (mode 0600).",
        f"device_id = {_toml_string(device_id)}",
        f"room_id = {_toml_string(room_id)}",
        f"alg = {_toml_string(credentials.keys.alg)}",
        f"signing_key = {_toml_string(credentials.keys.device_key.hex())}",
        f"mqtt_url = {_toml_string(mqtt_url)}",
        f"username = {_toml_string(credentials.mqtt.username)}",
        f"password = {_toml_string(credentials.mqtt.password)}",
        f"topic_prefix = {_toml_string(topic_prefix)}",
        'outbox = "outbox.sqlite"',
    ]
    if credentials.keys.alg == "ed25519" and hub_public_key is not None:
        lines.append("# The hub signs this device's commands with its own Ed25519 key:")
        lines.append(f"hub_public_key = {_toml_string(hub_public_key.hex())}")
    return "\n".join(lines) + "\n"
