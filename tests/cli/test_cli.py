"""The command line contract: names, --help, exit codes, --json."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

COMMANDS = ["demo", "serve", "migrate", "edge-agent", "simulate"]


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


def test_simulate_seeds_and_prints_counts_as_json(fresh_database_url, mqtt_server_url, topic_prefix, tmp_path):
    env = dict(os.environ, CAMPUSHUB_DATABASE_URL=fresh_database_url, CAMPUSHUB_MQTT_URL=mqtt_server_url,
               CAMPUSHUB_TOPIC_PREFIX=f"{topic_prefix}/cli", CAMPUSHUB_DATA_DIR=str(tmp_path))
    result = campushub("simulate", "--rooms", "2", "--students", "12", "--duration", "4", "--json", env=env)
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)
    assert counts["rooms"] == 2
    assert counts["qr_scan"] > 0 and counts["heartbeat"] >= 2
    assert counts["replayed_token"] >= 1 and counts["invalid_token"] >= 1
    assert "simulate:" in result.stderr  # progress goes to stderr, not into the JSON
