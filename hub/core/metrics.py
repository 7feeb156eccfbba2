"""The hub's Prometheus metrics, one registry per hub instance (tests run several)."""
from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily

log = logging.getLogger("hub.supervision")


def limiter_decisions_counter(registry: CollectorRegistry) -> Counter:
    """The web's login and API limiter decisions (web/protection.py), by limiter and decision."""
    return Counter(
        "campushub_limiter_decisions", "Login and API limiter decisions, by limiter and allowed/refused.",
        ["limiter", "decision"], registry=registry,
    )


class HubMetrics:
    """Counters are updated synchronously from actors; never blocks."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.events_ingested = Counter(
            "campushub_events_ingested", "Events accepted and committed, by kind.",
            ["kind"], registry=self.registry,
        )
        self.events_rejected = Counter(
            "campushub_events_rejected", "Messages rejected and recorded, by reason.",
            ["reason"], registry=self.registry,
        )
        self.actor_restarts = Counter(
            "campushub_actor_restarts", "Actor restarts performed by supervisors.",
            registry=self.registry,
        )
        self.commit_latency = Histogram(
            "campushub_ingest_to_commit_seconds",
            "Time from reading an MQTT message off the socket to its commit in PostgreSQL.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "campushub_commit_batch_size", "Messages per committed batch.",
            buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2000), registry=self.registry,
        )
        self.db_write_failures = Counter(
            "campushub_db_write_failures", "Failed batch commits (each retried).",
            registry=self.registry,
        )
        self.limiter_decisions = limiter_decisions_counter(self.registry)
        # The broker session's trust (issue 12 §1): hub/pipeline/session_guard.py, hub/app/broker_exposure.py.
        self.foreign_session_messages = Counter(
            "campushub_foreign_session_messages",
            "Messages on topics outside the hub's subscriptions (a foreign session): never acknowledged.",
            registry=self.registry,
        )
        self.foreign_session_trips = Counter(
            "campushub_foreign_session_trips", "Times the hub stepped away from a foreign MQTT session.",
            registry=self.registry,
        )
        self.broker_open = Gauge(
            "campushub_broker_open", "1 if the startup check found the broker accepts it anonymously, else 0.",
            ["check"], registry=self.registry,
        )
        # Broker-side quarantine of flooding devices (hub/services/quarantine.py).
        self.quarantines_started = Counter(
            "campushub_device_quarantines_started", "Devices quarantined at the broker after flooding.",
            registry=self.registry,
        )
        self.quarantines_ended = Counter(
            "campushub_device_quarantines_ended", "Device quarantines ended, by how (cooldown, released).",
            ["how"], registry=self.registry,
        )
        self.quarantined_devices = Gauge(
            "campushub_devices_quarantined", "Devices quarantined at the broker now.", registry=self.registry,
        )
        # Retention (hub/services/retention.py): what each pass removed, and when it last ran.
        self.retention_passes = Counter(
            "campushub_retention_passes", "Retention passes, by outcome (done, skipped: another hub held the lock,"
            " failed).", ["outcome"], registry=self.registry,
        )
        self.retention_rows_removed = Counter(
            "campushub_retention_rows_removed", "Rows removed by retention, by table (dropped partitions' rows"
            " as the planner estimated them).", ["table"], registry=self.registry,
        )
        self.retention_partitions_dropped = Counter(
            "campushub_retention_partitions_dropped", "Daily partitions dropped by retention, by table.",
            ["table"], registry=self.registry,
        )
        self.retention_last_run = Gauge(
            "campushub_retention_last_run_timestamp_seconds", "When the last completed retention pass ran (unix).",
            registry=self.registry,
        )
        self.retention_last_duration = Gauge(
            "campushub_retention_last_duration_seconds", "How long the last completed retention pass took.",
            registry=self.registry,
        )
        # Scheduled backups (hub/services/backups.py), when CAMPUSHUB_BACKUP_DIR turns them on.
        self.backup_passes = Counter(
            "campushub_backup_passes", "Scheduled backup passes, by outcome (done, skipped: another hub held the"
            " lock, failed).", ["outcome"], registry=self.registry,
        )
        self.backup_last_success = Gauge(
            "campushub_backup_last_success_timestamp_seconds", "When the last scheduled backup completed (unix).",
            registry=self.registry,
        )
        self.backup_last_duration = Gauge(
            "campushub_backup_last_duration_seconds", "How long the last completed scheduled backup took.",
            registry=self.registry,
        )
        self.backup_last_bytes = Gauge(
            "campushub_backup_last_bytes", "Size of the last scheduled backup file.", registry=self.registry,
        )
        self._mailbox_depth = Gauge(
            "campushub_mailbox_depth", "Messages waiting in all actor mailboxes.",
            registry=self.registry,
        )
        self._actors = Gauge(
            "campushub_actors", "Live actors under the root supervisor.", registry=self.registry,
        )

    def watch_counters(self, name: str, documentation: str, read: Callable[[], Any]) -> None:
        """Expose a dataclass of plain-int counters, read at scrape time, as the counter family ``name``
        labelled by field (``counter``). ``read()`` returns the dataclass, or None while there is none
        (e.g. before a client started); a counter that restarts from 0 (its owner was restarted) is a
        reset Prometheus's ``rate`` handles."""
        self.registry.register(_CountersCollector(name, documentation, read))

    def watch_actors(self, mailbox_depth: Callable[[], float], actor_count: Callable[[], float]) -> None:
        """Read the gauges from the supervision tree at scrape time."""
        self._mailbox_depth.set_function(mailbox_depth)
        self._actors.set_function(actor_count)

    def child_restarted(self, supervisor: str, child: str, error: BaseException | None) -> None:
        """``actors.SupervisorObserver`` hook: count, and say why (a crash must never be silent)."""
        self.actor_restarts.inc()
        log.warning("%s/%s restarted after %r", supervisor, child, error,
                    exc_info=(type(error), error, error.__traceback__) if error is not None else None)

    def render(self) -> str:
        return generate_latest(self.registry).decode()


class _CountersCollector:
    """One counter family from the int fields of a dataclass (see :meth:`HubMetrics.watch_counters`)."""

    def __init__(self, name: str, documentation: str, read: Callable[[], Any]) -> None:
        self._name, self._documentation, self._read = name, documentation, read

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self._name, self._documentation, labels=["counter"])

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield self._family()  # so that registering never reads the counters

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        stats = self._read()
        if stats is not None:
            for field in dataclasses.fields(stats):
                family.add_metric([field.name], getattr(stats, field.name))
        yield family
