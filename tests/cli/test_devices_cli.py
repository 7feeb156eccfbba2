"""``campushub devices``: register, list --json, rotate, revoke, export-mosquitto, as a real subprocess."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from hub.db import run_with_database
from hub.domain.credentials import mosquitto_verify


def campushub(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", "devices", *args], capture_output=True, text=True,
                          env=env, timeout=60)


def test_devices_subcommands(fresh_database_url: str, tmp_path: Path):
    run_with_database(fresh_database_url, lambda db: db.execute(
        "INSERT INTO rooms (id, name, building) VALUES ('r1', 'Room 1', 'Main')"))
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=fresh_database_url,
               CAMPUSHUB_MQTT_URL="mqtt://campushub-hub:hubpw@127.0.0.1:1883", CAMPUSHUB_TOPIC_PREFIX="cli-test",
               CAMPUSHUB_DATA_DIR=str(tmp_path / "data"))
    for name in ("CAMPUSHUB_MOSQUITTO_PASSWORD_FILE", "CAMPUSHUB_MOSQUITTO_ACL_FILE", "CAMPUSHUB_MOSQUITTO_PID_FILE"):
        env.pop(name, None)

    registered = campushub(env, "register", "cli-dev", "--room", "r1", "--kind", "sensor")
    assert registered.returncode == 0, registered.stderr
    config = tomllib.loads(registered.stdout)  # the edge-agent config, ready to save
    assert (config["device_id"], config["topic_prefix"], config["username"]) == ("cli-dev", "cli-test", "cli-dev")
    assert config["mqtt_url"] == "mqtt://127.0.0.1:1883"  # the hub's credentials are not handed out
    assert campushub(env, "register", "cli-dev", "--room", "r1", "--kind", "sensor").returncode == 1
    assert campushub(env, "register", "x", "--room", "r1", "--kind", "toaster").returncode == 2
    # The web API's rules (one use case, hub/db/provisioning.py): refused input exits 2.
    bad_id = campushub(env, "register", "bad id!", "--room", "r1", "--kind", "sensor")
    assert bad_id.returncode == 2 and "'device_id'" in bad_id.stderr, bad_id.stderr
    assert campushub(env, "register", "x", "--room", "r1", "--kind", "sensor", "--alg", "md5").returncode == 2
    assert campushub(env, "register", "x", "--room", "nowhere", "--kind", "sensor").returncode == 2
    registered_by = run_with_database(fresh_database_url, lambda db: db.fetchval(
        "SELECT registered_by FROM devices WHERE id = 'cli-dev'"))
    assert registered_by.startswith("cli:")

    listed = json.loads(campushub(env, "list", "--json").stdout)
    assert [(d["device_id"], d["credential_version"], d["revoked"]) for d in listed["items"]] == [("cli-dev", 1, False)]

    rotated = campushub(env, "rotate", "cli-dev", "--json")
    assert rotated.returncode == 0, rotated.stderr
    fresh = json.loads(rotated.stdout)
    assert fresh["device"]["credential_version"] == 2
    assert fresh["credentials"]["mqtt_password"] != config["password"]

    passwd, acl = tmp_path / "passwd", tmp_path / "acl"
    exported = campushub(env, "export-mosquitto", "--passwd", str(passwd), "--acl", str(acl))
    assert exported.returncode == 0, exported.stderr
    lines = dict(line.split(":", 1) for line in passwd.read_text().splitlines())
    assert set(lines) == {"campushub-hub", "cli-dev"}
    assert mosquitto_verify("hubpw", lines["campushub-hub"])
    assert mosquitto_verify(fresh["credentials"]["mqtt_password"], lines["cli-dev"])
    assert "topic write cli-test/v1/dev/cli-dev/up" in acl.read_text()

    revoked = campushub(env, "revoke", "cli-dev", "--reason", "retired")
    assert revoked.returncode == 0 and "revoked cli-dev" in revoked.stdout
    assert campushub(env, "rotate", "cli-dev").returncode == 1
    assert campushub(env, "export-mosquitto", "--passwd", str(passwd), "--acl", str(acl)).returncode == 0
    assert "cli-dev" not in passwd.read_text()
    assert campushub(env, "revoke", "nope").returncode == 1
