"""The device offline timeout: one default (hub/core/config.py), and the heartbeat intervals that fit it."""
from __future__ import annotations

import dataclasses

import pytest

from edge_agent.config import AgentConfig
from hub.core.config import DEVICE_OFFLINE_AFTER_S, Settings
from hub.domain.device_health import heartbeat_interval_problem


def test_the_offline_timeout_default_is_declared_once():
    assert DEVICE_OFFLINE_AFTER_S == 90.0
    assert Settings().device_offline_after_s == DEVICE_OFFLINE_AFTER_S
    assert Settings.from_env({}).device_offline_after_s == DEVICE_OFFLINE_AFTER_S
    assert Settings.from_env({"CAMPUSHUB_DEVICE_OFFLINE_AFTER_S": "600"}).device_offline_after_s == 600.0


def test_the_edge_agents_default_heartbeat_fits_the_default_timeout():
    default_heartbeat = next(f.default for f in dataclasses.fields(AgentConfig) if f.name == "heartbeat_interval_s")
    assert heartbeat_interval_problem(default_heartbeat, DEVICE_OFFLINE_AFTER_S) is None


@pytest.mark.parametrize("interval", [1, 15, 44.5, 45])
def test_heartbeats_that_let_two_into_the_timeout_fit(interval):
    assert heartbeat_interval_problem(interval, 90.0) is None


@pytest.mark.parametrize("interval", [46, 90, 120, float("inf")])
def test_slower_heartbeats_would_flap_and_are_refused(interval):
    problem = heartbeat_interval_problem(interval, 90.0)
    assert problem is not None and "offline timeout of 90 s" in problem and "at most 45 s" in problem


@pytest.mark.parametrize("interval", [0, -5, "15", None, True, float("nan")])
def test_a_heartbeat_interval_is_a_positive_number(interval):
    assert heartbeat_interval_problem(interval, 90.0) == "heartbeat_interval_s must be a positive number of seconds"
