"""The command line contract: names, --help, exit codes, --json."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

COMMANDS = ["demo", "serve", "migrate", "edge-agent", "simulate", "devices", "audit", "users", "retention", "backup",
            "restore", "keys"]


def campushub(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command):
    result = campushub(command, "--help")
    assert result.returncode == 0, result.stderr
    assert "usage:" in result.stdout


def test_usage_errors_exit_2():
    assert campushub().returncode == 2
    assert campushub("no-such-command").returncode == 2
    assert campushub("simulate", "--rooms", "0", "--students", "1", "--duration", "1").returncode == 2


def test_bad_mqtt_url_is_a_configuration_error():
    env = dict(os.environ, CAMPUSHUB_MQTT_URL="http://not-mqtt", CAMPUSHUB_DATABASE_URL="postgresql://x@127.0.0.1/x")
    result = campushub("serve", env=env)
    assert result.returncode == 2 and "mqtt://" in result.stderr


def test_simulate_seeds_and_prints_counts_as_json(fresh_database_url, open_mqtt_server_url, topic_prefix, tmp_path):
    # The simulated devices log in with the seeded devices' own accounts, which only a broker exported from this
    # database has: an open broker here (tests/hub/test_broker_config.py covers those accounts).
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=fresh_database_url, CAMPUSHUB_MQTT_URL=open_mqtt_server_url,
               CAMPUSHUB_TOPIC_PREFIX=f"{topic_prefix}/cli", CAMPUSHUB_DATA_DIR=str(tmp_path))
    result = campushub("simulate", "--rooms", "2", "--students", "12", "--duration", "4", "--json", env=env)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["rooms"] == 2
    assert counts["qr_scan"] > 0 and counts["heartbeat"] >= 2
    assert counts["replayed_token"] >= 1 and counts["invalid_token"] >= 1
    assert "simulate:" in result.stderr  # progress goes to stderr, not into the JSON


def _admin_password_hash(database_url: str) -> str | None:
    from hub.db import run_with_database

    return run_with_database(database_url, lambda db: db.fetchval("SELECT password_hash FROM users WHERE id = 'usr-admin'"))


def test_simulate_never_seeds_the_demos_well_known_password(fresh_database_url, mqtt_server_url, topic_prefix, tmp_path):
    from hub.core.passwords import verify_password
    from hub.db.seed import DEMO_PASSWORD

    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=fresh_database_url, CAMPUSHUB_MQTT_URL=mqtt_server_url,
               CAMPUSHUB_TOPIC_PREFIX=f"{topic_prefix}/cli-pw", CAMPUSHUB_DATA_DIR=str(tmp_path))
    result = campushub("simulate", "--rooms", "1", "--students", "2", "--duration", "1", "--json", env=env)
    assert result.returncode == 0, result.stderr
    admin_hash = _admin_password_hash(fresh_database_url)
    assert admin_hash and not verify_password(admin_hash, DEMO_PASSWORD)


def test_simulate_refuses_a_database_with_real_accounts(fresh_database_url, mqtt_server_url, topic_prefix, tmp_path):
    from hub.db import run_with_database

    run_with_database(fresh_database_url, lambda db: db.execute(
        "INSERT INTO users (id, username, display_name, role, password_hash)"
        " VALUES ('usr-0123456789abcdef', 'registrar', 'Registrar', 'admin', 'x')"))
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=fresh_database_url, CAMPUSHUB_MQTT_URL=mqtt_server_url,
               CAMPUSHUB_TOPIC_PREFIX=f"{topic_prefix}/cli-real", CAMPUSHUB_DATA_DIR=str(tmp_path))
    result = campushub("simulate", "--rooms", "1", "--students", "2", "--duration", "1", env=env)
    assert result.returncode == 2 and "1 account(s) the demo did not seed" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert _admin_password_hash(fresh_database_url) is None  # nothing was seeded


def test_serve_tls_flags_need_each_other_and_existing_files(tmp_path):
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL="postgresql://x@127.0.0.1:1/x", CAMPUSHUB_MQTT_URL="mqtt://127.0.0.1:1")
    result = campushub("serve", "--certfile", str(tmp_path / "cert.pem"), env=env)
    assert result.returncode == 2 and "both a certificate and a key" in result.stderr
    result = campushub("serve", "--certfile", str(tmp_path / "cert.pem"), "--keyfile", str(tmp_path / "key.pem"), env=env)
    assert result.returncode == 2 and "TLS file not found" in result.stderr
    result = campushub("serve", env=dict(env, CAMPUSHUB_SECURE_COOKIES="maybe"))
    assert result.returncode == 2 and "CAMPUSHUB_SECURE_COOKIES must be 1 or 0" in result.stderr
    result = campushub("serve", env=dict(env, CAMPUSHUB_METRICS_BIND="no-port"))
    assert result.returncode == 2 and "expected host:port" in result.stderr
    help_text = campushub("serve", "--help").stdout
    assert "--certfile" in help_text and "--keyfile" in help_text


def test_demo_banner_says_its_logins_are_for_the_demo_only(capsys):
    from types import SimpleNamespace

    from hub.app.cli import _print_demo_banner
    from hub.app.demo_access import demo_address
    from hub.db.seed import DEMO_PASSWORD

    login = SimpleNamespace(role="admin", username="admin", password=DEMO_PASSWORD)
    _print_demo_banner(demo_address(None, lan=False), 8080, SimpleNamespace(logins=[login]))
    out = capsys.readouterr().out
    assert "CampusHub demo running at http://127.0.0.1:8080/" in out
    assert "for this demo only" in out and "never seed them into a\nreal campus's database" in out
    assert f"admin    admin        password: {DEMO_PASSWORD}" in out  # the demo still prints its logins
