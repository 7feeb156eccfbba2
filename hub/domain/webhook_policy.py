"""Where the hub may POST webhooks: the URL and address policy, and URL redaction for logs.

Pure (no I/O): the web checks a URL when a subscription is written
(:func:`url_problem`), the dispatcher (hub/services/warnings.py) checks it again before
each delivery and checks every address the host resolves to
(:func:`address_problem`) before it connects to exactly that address.

Refused: schemes other than http/https, userinfo (``user:pass@``: credentials
belong in the signing secret), cloud-metadata host names and addresses,
link-local (169.254.0.0/16, fe80::/10), unspecified ("this network",
0.0.0.0/8, ``::``), multicast and broadcast addresses, and the same addresses
wrapped in IPv6 (IPv4-mapped, IPv4-compatible, NAT64, 6to4). Allowed on
purpose: loopback and private ranges (10/8, 172.16/12, 192.168/16, fc00::/7
except the metadata address), because campus services live there and the
subscription API is admin-only. See docs/notifications.md.
"""
from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

SCHEMES = ("http", "https")

#: Host names that reach a cloud provider's instance-metadata service from inside an instance.
METADATA_HOSTS = frozenset({
    "metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal",
    "metadata.azure.internal", "metadata.tencentyun.com", "metadata.platformequinix.com",
})

#: Metadata addresses outside the link-local ranges (which are refused as a whole anyway).
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "fd00:ec2::254",    # AWS IMDS over IPv6 (a unique-local address: private ranges stay allowed)
    "100.100.100.200",  # Alibaba Cloud
    "192.0.0.192",      # Oracle Cloud (legacy)
))

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


def address_problem(address: str | Address) -> str | None:
    """Why the hub must not connect to ``address`` (None: it may). Accepts ``fe80::1%eth0`` forms."""
    try:
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    except ValueError:
        return f"{address!r} is not an IP address"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            ip = ipaddress.IPv6Address(str(ip).split("%", 1)[0])
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            inner = address_problem(embedded)
            return f"{ip} embeds {embedded}: {inner}" if inner else None
    if ip in METADATA_ADDRESSES:
        return f"{ip} is a cloud metadata address"
    if ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _THIS_NETWORK):
        return f"{ip} is an unspecified address"
    if ip.is_link_local:
        return f"{ip} is a link-local address (cloud metadata lives there)"
    if ip.is_multicast:
        return f"{ip} is a multicast address"
    if ip == ipaddress.IPv4Address("255.255.255.255"):
        return f"{ip} is the broadcast address"
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    packed = ip.packed
    if ip in _NAT64 or (packed[:12] == bytes(12) and int(ip) > 1):  # ::a.b.c.d (not :: or ::1)
        return ipaddress.IPv4Address(packed[12:])
    return None


def _inet_aton(host: str) -> ipaddress.IPv4Address | None:
    """``host`` read the way the C resolver reads a numeric host (``2852039166``, ``0xa9.254.0251.254``).

    None if it is not such a form. These spellings reach the same address as
    the dotted quad, so the policy must see through them.
    """
    labels = host.split(".")
    if not 1 <= len(labels) <= 4 or not all(_NUMERIC_LABEL.match(label) for label in labels):
        return None
    try:
        values = [_label_value(label) for label in labels]
    except ValueError:  # e.g. "09": not octal, and the resolver refuses it too
        return None
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = 0
    for v in head:
        number = number * 256 + v
    return ipaddress.IPv4Address(number * 256 ** (4 - len(head)) + last)


def _label_value(label: str) -> int:
    """One label of a numeric host: 0x-prefixed hex, 0-prefixed octal, or decimal."""
    if label.startswith("0x"):
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8)
    return int(label)


def normalize_host(host: str) -> str:
    """The ASCII, lower-case, no-trailing-dot form a resolver would look up (IDNA applied).

    Raises ValueError for a host that has no such form.
    """
    host = host.strip().rstrip(".").lower()
    if not host.isascii():
        # IDNA maps look-alikes (e.g. circled digits) to ASCII: check what would be resolved.
        host = host.encode("idna").decode("ascii").lower()
    return host


def host_problem(host: str) -> str | None:
    """Why a URL's host (as :func:`urllib.parse.urlsplit` gives it) is not an allowed target."""
    if "%" in host:
        return "the host must not contain '%' (no percent-encoding or IPv6 zone ids)"
    try:
        name = normalize_host(host)
    except (UnicodeError, ValueError):
        return "the host is not a valid host name"
    if not name:
        return "the URL has no host"
    if name in METADATA_HOSTS:
        return f"{name} is a cloud metadata host"
    try:
        literal: Address | None = ipaddress.ip_address(name)
    except ValueError:
        literal = _inet_aton(name)
    return address_problem(literal) if literal is not None else None


def url_problem(url: str) -> str | None:
    """Why the hub must not POST to ``url`` (None: it may, subject to the address check when connecting)."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port out of range or not a number
    except ValueError:
        return "the URL cannot be parsed"
    if parts.scheme not in SCHEMES:
        return "only http and https URLs are allowed"
    if "@" in parts.netloc:
        return ("the URL must not contain a user name or password; authenticate the hub by the "
                "webhook's signing secret instead")
    if not hostname:
        return "the URL has no host"
    return host_problem(hostname)


def redact_url(url: str) -> str:
    """``url`` without userinfo, query values or fragment: fit for logs and API responses."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
    except ValueError:
        return "<unparsable URL>"
    query = "&".join(f"{pair.split('=', 1)[0]}=***" if "=" in pair else "***"
                     for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


_USERINFO = re.compile(r"(?<=//)[^/\s@]+@")
_QUERY = re.compile(r"(?<=[\w/])\?[^\s'\"<>]+")


def redact_text(text: str) -> str:
    """``text`` (an error message, a log line) with the userinfo and query of any URL in it redacted."""
    return _QUERY.sub("?***", _USERINFO.sub("", text))
