"""Where a display-mode check-in came from, judged against the allowed networks. Pure: no I/O.

A campus (and, overriding it, a room) may list the client address ranges
(CIDR, IPv4 and IPv6) its display-mode check-ins are expected from, as
Moodle's attendance subnet restriction does. A check-in from outside them is
still ACCEPTED and flagged ``outside_network`` for faculty review (a signal,
never proof: a VPN, a campus NAT or a phone on campus Wi-Fi outside the room
all defeat it; docs/checkin.md). The flags themselves are raised by
``hub.domain.checkin.SessionState.judge_display``; this module decides:

- :func:`parse_ranges`: an admin's list of ranges, checked and normalised;
- :func:`client_address`: the client's address behind trusted proxies
  (``X-Forwarded-For``, read right to left, only from a trusted peer);
- :func:`effective_restriction`: room over campus; none when both are empty;
- :func:`place_client`: the address reduced to its :func:`network_of` (a /24
  or /48, all that is ever stored) and whether it lies inside the ranges.

Privacy: the full address never leaves the request that carried it; only the
/24 (IPv4) or /48 (IPv6) network and the inside/outside verdict travel on
(the signed pending token, ``display_checkins.network``, flag evidence).
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Literal, Sequence

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RestrictionScope = Literal["room", "campus"]

#: At most this many ranges per campus or room: a restriction is a handful of subnets, not a list of hosts.
MAX_RANGES = 64
#: Longest text of one range (an IPv6 CIDR is at most 43 characters).
MAX_RANGE_CHARS = 64
#: What is kept of an address: its /24 (IPv4) or /48 (IPv6, a site's usual allocation) network.
KEPT_PREFIX = {4: 24, 6: 48}
#: This many distinct kept networks checking in with one display code window flag ``many_networks``.
MANY_NETWORKS = 3


class InvalidRange(ValueError):
    """An address range that cannot be used; ``index`` is its position in the list."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


def parse_ranges(texts: Sequence[str]) -> tuple[Network, ...]:
    """Check and normalise a list of CIDR ranges (a bare address means that one host).

    Duplicates are dropped, order kept. Raises :class:`InvalidRange` for a
    malformed range, one with host bits set (``10.1.2.3/8``: almost always a
    typo, so it is refused with the network it probably meant) or more than
    :data:`MAX_RANGES`.
    """
    if len(texts) > MAX_RANGES:
        raise InvalidRange(f"at most {MAX_RANGES} ranges", MAX_RANGES)
    ranges: list[Network] = []
    for index, raw in enumerate(texts):
        text = raw.strip()
        if not text or len(text) > MAX_RANGE_CHARS:
            raise InvalidRange("not an address range such as 192.0.2.0/24 or 2001:db8::/48", index)
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            try:
                meant = ipaddress.ip_network(text, strict=False)
            except ValueError:
                raise InvalidRange(f"{text!r} is not an address range such as 192.0.2.0/24 or 2001:db8::/48",
                                   index) from None
            raise InvalidRange(f"{text} has host bits set: did you mean {meant}?", index) from None
        if network not in ranges:
            ranges.append(network)
    return tuple(ranges)


def parse_address(text: str | None) -> Address | None:
    """An address from a peer or header value, ``None`` if it is not one.

    An IPv4-mapped IPv6 address (``::ffff:192.0.2.7``, what a dual-stack
    listener reports for IPv4 clients) is the IPv4 address it carries; a zone
    (``fe80::1%eth0``) is dropped.
    """
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: Address, ranges: Iterable[Network]) -> bool:
    return any(address.version == r.version and address in r for r in ranges)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[Network]) -> Address | None:
    """The client's address: the peer's, unless the peer is a trusted proxy.

    Behind trusted proxies the ``X-Forwarded-For`` hops (every header line,
    comma-separated) are read from the right, skipping trusted proxies; the
    first other hop is the client. Hops left of it were written by the client
    itself and are never believed. ``None`` when the hop that decides is not
    an address (a proxy that writes something else, or no peer at all).
    """
    address = parse_address(peer)
    if address is None or not _within(address, trusted):
        return address
    hops = [hop.strip() for line in forwarded_for for hop in line.split(",") if hop.strip()]
    for hop in reversed(hops):
        hop_address = parse_address(hop)
        if hop_address is None:
            return None
        address = hop_address
        if not _within(address, trusted):
            return address
    return address  # every hop is a trusted proxy: the leftmost is as close as we get


def network_of(address: Address) -> Network:
    """The /24 (IPv4) or /48 (IPv6) network of ``address``: what is kept of it."""
    return ipaddress.ip_network(f"{address}/{KEPT_PREFIX[address.version]}", strict=False)


@dataclass(frozen=True)
class NetworkRestriction:
    """The ranges display check-ins of one room are expected from, and where they are set."""

    ranges: tuple[Network, ...]
    scope: RestrictionScope


def effective_restriction(campus: Sequence[Network], room: Sequence[Network] | None) -> NetworkRestriction | None:
    """The room's ranges when the room has its own setting (``room`` not ``None``), else the campus's.

    An empty list means no restriction, so a room can opt out of a campus
    restriction with an empty setting of its own.
    """
    if room is not None:
        return NetworkRestriction(tuple(room), "room") if room else None
    return NetworkRestriction(tuple(campus), "campus") if campus else None


@dataclass(frozen=True)
class ClientNetwork:
    """Where a display check-in came from, as far as it is kept.

    ``network``: the client's /24 or /48 (``None``: no usable address).
    ``inside``: within the restriction's ranges; ``None`` when no restriction applies.
    ``scope``: which setting decided (``None`` without a restriction).
    """

    network: str | None
    inside: bool | None
    scope: RestrictionScope | None = None


def place_client(address: Address | None, restriction: NetworkRestriction | None) -> ClientNetwork:
    """Judge ``address`` against ``restriction``: an unknown address is outside any restriction."""
    network = str(network_of(address)) if address is not None else None
    if restriction is None:
        return ClientNetwork(network, None)
    inside = address is not None and _within(address, restriction.ranges)
    return ClientNetwork(network, inside, restriction.scope)


def networks_reached(networks: Iterable[str | None]) -> set[str]:
    """The distinct kept networks among ``networks`` (unknown ones do not count)."""
    return {n for n in networks if n is not None}
