"""``campushub demo --host/--lan``: where it listens, the URL the banner gives (the one the projector page
must be opened at for its QR code to work on a phone), and the warning when it is reachable."""
from __future__ import annotations

import ipaddress
import subprocess
import sys

import pytest

from hub.app.demo_access import LOOPBACK, banner_lines, demo_address, lan_address

LAN = "192.168.1.23"


def test_default_is_this_machine_only() -> None:
    address = demo_address(None, lan=False, lan_ip=LAN)
    assert (address.bind, address.url_host, address.exposed) == (LOOPBACK, LOOPBACK, False)
    text = "\n".join(banner_lines(address, 8080))
    assert "http://127.0.0.1:8080/" in text and "--lan" in text and "WARNING" not in text


def test_every_interface_tells_the_lan_address_and_warns() -> None:
    address = demo_address("0.0.0.0", lan=False, lan_ip=LAN)
    assert (address.bind, address.url_host, address.exposed) == ("0.0.0.0", LAN, True)
    lines = banner_lines(address, 8080)
    assert lines[0] == f"CampusHub demo running at http://{LAN}:8080/"
    text = "\n".join(lines)
    assert f"open the projector page at http://{LAN}:8080/" in text
    assert "WARNING: listening on 0.0.0.0: anyone on this network can reach the demo" in text


def test_lan_listens_on_the_lan_address() -> None:
    address = demo_address(None, lan=True, lan_ip=LAN)
    assert (address.bind, address.url_host, address.exposed) == (LAN, LAN, True)
    assert address.url(9000) == f"http://{LAN}:9000/"


def test_a_given_address_is_used_as_given_and_ipv6_is_bracketed() -> None:
    assert demo_address("10.0.0.5", lan=False).url(8080) == "http://10.0.0.5:8080/"
    assert demo_address("::1", lan=False).exposed is False
    assert demo_address("fd00::5", lan=False).url(8080) == "http://[fd00::5]:8080/"


@pytest.mark.parametrize("host", ["example.org", "0.0.0.0.0", ""])
def test_a_host_that_is_not_an_address_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="--host must be an IP address"):
        demo_address(host, lan=False)


def test_lan_and_host_together_are_refused() -> None:
    with pytest.raises(ValueError, match="not both"):
        demo_address("0.0.0.0", lan=True, lan_ip=LAN)


def test_lan_address_is_a_real_non_loopback_address_or_none() -> None:
    found = lan_address()
    assert found is None or not ipaddress.ip_address(found).is_unspecified


def test_the_cli_takes_one_of_host_and_lan() -> None:
    both = subprocess.run([sys.executable, "-m", "hub", "demo", "--lan", "--host", "0.0.0.0"],
                          capture_output=True, text=True, timeout=60)
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    bad = subprocess.run([sys.executable, "-m", "hub", "demo", "--host", "campus.example"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--host must be an IP address" in bad.stderr
