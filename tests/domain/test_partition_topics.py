"""What a partition's MQTT session subscribes to (hub/domain/partition_topics.py): pure, no broker."""
from __future__ import annotations

import pytest

from hub.domain.partition_topics import SubscriptionChange, partition_topics, subscription_change
from schemas import Topics

TOPICS = Topics("campus-a")


def test_each_device_brings_its_exact_uplink_and_status_topic() -> None:
    assert partition_topics(TOPICS, ["dev-1", "dev-2"]) == {
        "campus-a/v1/dev/dev-1/up", "campus-a/v1/dev/dev-1/status",
        "campus-a/v1/dev/dev-2/up", "campus-a/v1/dev/dev-2/status",
    }


def test_the_topics_are_the_ones_the_ingress_parses_back_to_the_device() -> None:
    for topic in partition_topics(TOPICS, ["room-101.qr_1"]):
        device_id, channel = TOPICS.parse(topic) or ("", "")
        assert device_id == "room-101.qr_1" and channel in ("up", "status")


def test_no_devices_means_no_subscriptions_and_duplicates_count_once() -> None:
    assert partition_topics(TOPICS, []) == frozenset()
    assert len(partition_topics(TOPICS, ["dev-1", "dev-1"])) == 2


@pytest.mark.parametrize("device_id", ["+", "#", "a/b", "dev+1", "", "x" * 65])
def test_a_device_id_that_would_widen_the_filter_is_refused(device_id: str) -> None:
    # "+" would subscribe the partition to every device's uplink.
    with pytest.raises(ValueError, match="registry's shape"):
        partition_topics(TOPICS, ["dev-1", device_id])


def test_the_change_subscribes_what_is_new_and_unsubscribes_what_left() -> None:
    current = partition_topics(TOPICS, ["stays", "leaves"])
    wanted = partition_topics(TOPICS, ["stays", "arrives"])
    change = subscription_change(current, wanted)
    assert change == SubscriptionChange(
        subscribe=("campus-a/v1/dev/arrives/status", "campus-a/v1/dev/arrives/up"),
        unsubscribe=("campus-a/v1/dev/leaves/status", "campus-a/v1/dev/leaves/up"),
    )
    assert change  # something to do
    # Applying the change reaches exactly what is wanted.
    assert (current | set(change.subscribe)) - set(change.unsubscribe) == wanted


def test_no_change_is_falsy_and_a_fresh_session_subscribes_everything() -> None:
    wanted = partition_topics(TOPICS, ["b", "a"])
    assert not subscription_change(wanted, wanted)
    assert subscription_change(wanted, set()) == SubscriptionChange(subscribe=(), unsubscribe=tuple(sorted(wanted)))
    fresh = subscription_change(frozenset(), wanted)
    assert fresh.subscribe == tuple(sorted(wanted)) and fresh.unsubscribe == ()
