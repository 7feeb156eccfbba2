"""Where ``campushub demo`` listens and which address it tells people to open.

The projector page's QR code holds the address the projector page itself was
opened at (``web/routes/checkin.py``, ``display_url``: the request's own root
URL). So a phone can follow the QR only if the projector page was opened at an
address the phone can reach: with ``--host 0.0.0.0`` (every interface) or
``--lan`` (this machine's LAN address) the banner names that address, and warns
that the demo, with its well-known demo passwords, is then reachable by anyone
on the network. Pure but for :func:`lan_address`, which asks the OS for a route.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

LOOPBACK = "127.0.0.1"
#: A TEST-NET-1 address (RFC 5737): connecting a UDP socket to it sends nothing,
#: it only makes the OS pick the interface of the default route.
_ROUTE_PROBE = ("192.0.2.1", 9)


@dataclass(frozen=True)
class DemoAddress:
    """``bind``: the address the web server listens on; ``url_host``: the one people open."""

    bind: str
    url_host: str

    @property
    def exposed(self) -> bool:
        """Reachable from other machines (not only from this one)."""
        return not ipaddress.ip_address(self.bind).is_loopback

    def url(self, port: int) -> str:
        host = f"[{self.url_host}]" if ":" in self.url_host else self.url_host
        return f"http://{host}:{port}/"


def lan_address() -> str | None:
    """This machine's address on the network of its default route; None without one (offline)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(_ROUTE_PROBE)
            address = probe.getsockname()[0]
        except OSError:
            return None
    return None if ipaddress.ip_address(address).is_unspecified else str(address)


def demo_address(host: str | None, *, lan: bool, lan_ip: str | None = None) -> DemoAddress:
    """The demo's address from ``--host``/``--lan``; raises ``ValueError`` on a bad host or no LAN.

    ``--lan``: listen on the LAN address and tell that one. ``--host 0.0.0.0``
    (or ``::``): listen everywhere and tell the LAN address (or loopback if
    there is none). Another ``--host``: listen on it and tell it. ``lan_ip``
    stands in for :func:`lan_address` (tests).
    """
    if lan and host is not None:
        raise ValueError("--lan picks the address itself: give --lan or --host, not both")
    found = lan_ip if lan_ip is not None else (lan_address() if lan or host in ("0.0.0.0", "::") else None)
    if lan:
        if found is None:
            raise ValueError("--lan: this machine has no network address (no default route); use --host")
        return DemoAddress(found, found)
    if host is None:
        return DemoAddress(LOOPBACK, LOOPBACK)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--host must be an IP address, got {host!r}") from None
    if address.is_unspecified:
        return DemoAddress(host, found or LOOPBACK)
    return DemoAddress(host, host)


def banner_lines(address: DemoAddress, port: int) -> list[str]:
    """What the demo banner says about where to open it (and the warning when it is exposed)."""
    url = address.url(port)
    lines = [f"CampusHub demo running at {url}"]
    if address.exposed:
        lines += [
            f"Phones on the same network can open it: open the projector page at {url} (not at",
            "127.0.0.1), so its check-in QR code holds an address a phone can reach.",
            f"WARNING: listening on {address.bind}: anyone on this network can reach the demo, and its",
            "logins share the well-known password below. Use it on a network you trust; stop it after.",
        ]
    else:
        lines.append("Only this machine can open it; to try the projector's QR with a phone, run "
                     "`campushub demo --lan` (or --host 0.0.0.0).")
    return lines
