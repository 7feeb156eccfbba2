"""The check-in network restriction, pure: ranges, the client address behind proxies, placement, flags."""
from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone

import pytest

from hub.domain.checkin import Accepted, DisplayUse, Rejected, SessionState, SessionWindow
from hub.domain.checkin_network import (
    MAX_RANGES,
    ClientNetwork,
    InvalidRange,
    NetworkRestriction,
    client_address,
    effective_restriction,
    network_of,
    parse_address,
    parse_ranges,
    place_client,
)

net = ipaddress.ip_network
START = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)
STUDENTS = [f"stu-{i}" for i in range(1, 8)]


@pytest.mark.parametrize("texts, expected", [
    ([], ()),
    (["192.0.2.0/24"], (net("192.0.2.0/24"),)),
    ([" 10.0.0.0/8 ", "2001:db8::/48"], (net("10.0.0.0/8"), net("2001:db8::/48"))),
    (["192.0.2.7"], (net("192.0.2.7/32"),)),  # a bare address: that one host
    (["2001:db8::1"], (net("2001:db8::1/128"),)),
    (["10.0.0.0/8", "10.0.0.0/8"], (net("10.0.0.0/8"),)),  # duplicates dropped
])
def test_parse_ranges_accepts_and_normalises(texts, expected):
    assert parse_ranges(texts) == expected


@pytest.mark.parametrize("texts, index, says", [
    (["192.0.2.0/24", "10.1.2.3/8"], 1, "did you mean 10.0.0.0/8"),
    (["campus"], 0, "not an address range"),
    (["192.0.2.0/33"], 0, "not an address range"),
    ([""], 0, "not an address range"),
    (["1" * 70], 0, "not an address range"),
    (["10.0.0.0/8"] * (MAX_RANGES + 1), MAX_RANGES, f"at most {MAX_RANGES}"),
])
def test_parse_ranges_refuses_with_the_position(texts, index, says):
    with pytest.raises(InvalidRange) as refused:
        parse_ranges(texts)
    assert refused.value.index == index and says in str(refused.value)


@pytest.mark.parametrize("text, expected", [
    ("192.0.2.7", "192.0.2.7"),
    ("::ffff:192.0.2.7", "192.0.2.7"),  # what a dual-stack listener reports for an IPv4 client
    ("[2001:db8::5]", "2001:db8::5"),
    ("fe80::1%eth0", "fe80::1"),
    ("unknown", None),
    ("", None),
    (None, None),
])
def test_parse_address(text, expected):
    address = parse_address(text)
    assert (str(address) if address else None) == expected


PROXY = (net("10.9.0.0/16"),)


@pytest.mark.parametrize("peer, forwarded, expected", [
    # No trusted proxy in between: the header is the client's own word and is ignored.
    ("198.51.100.7", ["10.1.2.3"], "198.51.100.7"),
    # The trusted proxy saw 198.51.100.7; what the client wrote to its left is not believed.
    ("10.9.0.1", ["10.1.2.3, 198.51.100.7"], "198.51.100.7"),
    # Two trusted hops, and several header lines.
    ("10.9.0.1", ["203.0.113.9", "10.9.0.2"], "203.0.113.9"),
    # Only trusted hops: the leftmost.
    ("10.9.0.1", ["10.9.0.3"], "10.9.0.3"),
    # A trusted peer that forwarded nothing: the peer.
    ("10.9.0.1", [], "10.9.0.1"),
    # A garbled hop where the client should be: unknown, never a guess.
    ("10.9.0.1", ["198.51.100.7, garbage"], None),
    (None, ["198.51.100.7"], None),
])
def test_client_address_behind_trusted_proxies(peer, forwarded, expected):
    address = client_address(peer, forwarded, PROXY)
    assert (str(address) if address else None) == expected


def test_what_is_kept_of_an_address_is_its_24_or_48():
    assert str(network_of(ipaddress.ip_address("198.51.100.77"))) == "198.51.100.0/24"
    assert str(network_of(ipaddress.ip_address("2001:db8:1:2::9"))) == "2001:db8:1::/48"


CAMPUS = (net("10.0.0.0/8"),)
ROOM = (net("10.20.30.0/24"),)


@pytest.mark.parametrize("campus, room, expected", [
    ((), None, None),
    (CAMPUS, None, NetworkRestriction(CAMPUS, "campus")),
    (CAMPUS, ROOM, NetworkRestriction(ROOM, "room")),  # the room's own setting wins
    ((), ROOM, NetworkRestriction(ROOM, "room")),
    (CAMPUS, (), None),  # a room's empty setting exempts it
])
def test_effective_restriction(campus, room, expected):
    assert effective_restriction(campus, room) == expected


@pytest.mark.parametrize("address, restriction, expected", [
    ("10.20.30.40", None, ClientNetwork("10.20.30.0/24", None)),
    ("10.20.30.40", NetworkRestriction(ROOM, "room"), ClientNetwork("10.20.30.0/24", True, "room")),
    ("10.20.31.40", NetworkRestriction(ROOM, "room"), ClientNetwork("10.20.31.0/24", False, "room")),
    ("2001:db8::1", NetworkRestriction(CAMPUS, "campus"), ClientNetwork("2001:db8::/48", False, "campus")),
    ("2001:db8::1", NetworkRestriction((net("2001:db8::/32"),), "campus"),
     ClientNetwork("2001:db8::/48", True, "campus")),
    (None, NetworkRestriction(CAMPUS, "campus"), ClientNetwork(None, False, "campus")),  # unknown: outside
    (None, None, ClientNetwork(None, None)),
])
def test_place_client(address, restriction, expected):
    assert place_client(parse_address(address), restriction) == expected


# --- the flags, through SessionState.judge_display --------------------------------------------------

def session() -> SessionState:
    window = SessionWindow(START, START + timedelta(hours=1), timedelta(minutes=10), timedelta(minutes=15))
    return SessionState("ses-1", "room-1", window, {s: b"k" * 32 for s in STUDENTS})


def check_in(s: SessionState, student: str, client: ClientNetwork | None, window: int = 7):
    phone = student.encode()  # one phone per student: no shared_device noise
    decision = s.judge_display(student, START, phone, phone + b"-nonce", client, window)
    if isinstance(decision, Accepted):
        s.apply(decision, "display")
        s.apply_display(DisplayUse(student, phone, phone + b"-nonce", START, window,
                                   client.network if client else None, client.inside if client else None))
    return decision


def kinds(decision) -> list[tuple[str, str]]:
    return [(f.kind, f.student_id) for f in decision.flags]


@pytest.mark.parametrize("client, expected", [
    (ClientNetwork("10.20.30.0/24", True, "room"), []),
    (ClientNetwork("10.20.30.0/24", None), []),
    (ClientNetwork("198.51.100.0/24", False, "room"), [("outside_network", "stu-1")]),
    (ClientNetwork(None, False, "campus"), [("outside_network", "stu-1")]),
    (None, []),
])
def test_outside_network_is_accepted_and_flagged(client, expected):
    decision = check_in(session(), "stu-1", client)
    assert isinstance(decision, Accepted) and kinds(decision) == expected


def test_the_outside_flag_says_where_in_plain_words_and_keeps_only_the_network():
    decision = check_in(session(), "stu-1", ClientNetwork("198.51.100.0/24", False, "room"))
    (flag,) = decision.flags
    assert flag.detail == "checked in from network 198.51.100.0/24, outside the room's allowed networks"
    assert flag.evidence == {"network": "198.51.100.0/24", "restriction": "room"}


def test_a_refused_checkin_raises_no_network_flag():
    s = session()
    check_in(s, "stu-1", ClientNetwork("10.20.30.0/24", True, "room"))
    again = s.judge_display("stu-1", START, b"other", b"n2", ClientNetwork("198.51.100.0/24", False, "room"), 7)
    assert isinstance(again, Rejected) and again.reason == "duplicate_checkin" and not again.flags


def _free(network: str) -> ClientNetwork:
    return ClientNetwork(network, None)


def test_a_third_network_in_one_window_flags_it_and_the_earlier_checkins_once():
    s = session()
    assert kinds(check_in(s, "stu-1", _free("10.1.1.0/24"))) == []
    assert kinds(check_in(s, "stu-2", _free("10.1.1.0/24"))) == []
    assert kinds(check_in(s, "stu-3", _free("198.51.100.0/24"))) == []
    third = check_in(s, "stu-4", _free("203.0.113.0/24"))
    assert kinds(third) == [("many_networks", "stu-4"), ("many_networks", "stu-1"), ("many_networks", "stu-2"),
                            ("many_networks", "stu-3")]
    assert third.flags[0].evidence == {"code_window": 7, "network": "203.0.113.0/24", "network_count": 3}
    # Past the threshold: each later check-in of that window is flagged itself, nobody twice.
    assert kinds(check_in(s, "stu-5", _free("10.1.1.0/24"))) == [("many_networks", "stu-5")]


def test_networks_count_per_display_window_and_unknown_ones_do_not_count():
    s = session()
    check_in(s, "stu-1", _free("10.1.1.0/24"), window=7)
    check_in(s, "stu-2", _free("198.51.100.0/24"), window=7)
    check_in(s, "stu-3", ClientNetwork(None, None), window=7)
    assert kinds(check_in(s, "stu-4", _free("203.0.113.0/24"), window=8)) == []
    assert kinds(check_in(s, "stu-5", _free("10.1.1.0/24"), window=7)) == []


def test_checkins_inside_a_restriction_are_never_flagged_many_networks():
    s = session()
    inside = ClientNetwork("10.20.30.0/24", True, "room")
    check_in(s, "stu-1", inside)
    check_in(s, "stu-2", ClientNetwork("198.51.100.0/24", False, "room"))
    third = check_in(s, "stu-3", ClientNetwork("203.0.113.0/24", False, "room"))
    assert kinds(third) == [("outside_network", "stu-3"), ("many_networks", "stu-3"), ("many_networks", "stu-2")]
    assert kinds(check_in(s, "stu-4", inside)) == []


def test_ipv6_networks_count_by_their_48():
    s = session()
    for student, network in (("stu-1", "2001:db8:1::/48"), ("stu-2", "2001:db8:2::/48")):
        check_in(s, student, _free(network))
    assert [k for k, _ in kinds(check_in(s, "stu-3", _free("2001:db8:3::/48")))] == ["many_networks"] * 3
