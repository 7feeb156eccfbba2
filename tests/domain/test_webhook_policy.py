"""The webhook target policy (hub/domain/webhook_policy.py): which URLs and addresses the hub may POST to."""
from __future__ import annotations

import pytest

from hub.domain.webhook_policy import address_problem, redact_text, redact_url, url_problem

REFUSED_URLS = {
    # the hostile corpus' findings
    "http://169.254.169.254/latest/meta-data/": "link-local",
    "http://[fe80::1]/": "link-local",
    "http://[fd00:ec2::254]/": "metadata address",
    "http://metadata.google.internal/computeMetadata/v1/": "metadata host",
    "http://0.0.0.0/": "unspecified",
    "http://[::ffff:169.254.169.254]/": "link-local",
    "https://user:pass@hooks.example.org/": "user name or password",
    "https://token@hooks.example.org/": "user name or password",
    "https://@hooks.example.org/": "user name or password",
    # other spellings of the same targets
    "http://METADATA.Google.Internal./": "metadata host",
    "http://metadata/": "metadata host",
    "http://169.254.169.254./": "link-local",
    "http://2852039166/": "link-local",               # 169.254.169.254 as one decimal number
    "http://0xa9.0xfe.0xa9.0xfe/": "link-local",       # ... in hex
    "http://0251.0376.0251.0376/": "link-local",       # ... in octal
    "http://169.254.43518/": "link-local",             # ... as a.b.c
    "http://\u2460\u2465\u2468.\u2461\u2464\u2463.\u2460\u2465\u2468.\u2461\u2464\u2463/": "link-local",  # circled
    "http://[::169.254.169.254]/": "link-local",       # IPv4-compatible
    "http://[64:ff9b::a9fe:a9fe]/": "link-local",      # NAT64
    "http://[2002:a9fe:a9fe::1]/": "link-local",       # 6to4
    "http://[fe80::1%25eth0]/": "'%'",
    "http://0/": "unspecified",
    "http://[::]/": "unspecified",
    "http://0.1.2.3/": "unspecified",
    "http://224.0.0.1/": "multicast",
    "http://[ff02::1]/": "multicast",
    "http://255.255.255.255/": "broadcast",
    "http://100.100.100.200/": "metadata address",
    "ftp://hooks.example.org/": "only http and https",
    "file:///etc/passwd": "only http and https",
    "http:///path": "no host",
    "http://hooks.example.org:99999/": "cannot be parsed",
}

ALLOWED_URLS = [
    "https://hooks.example.org/campushub?channel=attendance",
    "http://127.0.0.1:8080/hooks",       # loopback: a service on the hub's own machine
    "http://localhost/hooks",
    "http://[::1]:8000/",
    "http://10.20.30.40/sis",            # private ranges: campus services
    "http://172.16.0.5/",
    "http://192.168.1.10:9000/",
    "http://[fd12:3456::1]/",            # unique-local (only fd00:ec2::254 is refused)
    "http://[::ffff:10.0.0.1]/",
    "https://1e100.net/",                # looks numeric-ish, is a name
    "http://169.255.0.1/",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_refused_urls_say_why(url):
    problem = url_problem(url)
    assert problem is not None and REFUSED_URLS[url] in problem, problem


@pytest.mark.parametrize("url", ALLOWED_URLS)
def test_loopback_private_and_public_targets_are_allowed(url):
    assert url_problem(url) is None


@pytest.mark.parametrize("address", [
    "169.254.169.254", "169.254.170.2", "fe80::1", "fe80::1%eth0", "0.0.0.0", "::", "224.0.0.251", "ff02::fb",
    "::ffff:169.254.169.254", "::ffff:0.0.0.0", "fd00:ec2::254", "255.255.255.255",
])
def test_forbidden_resolved_addresses(address):
    assert address_problem(address) is not None


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "10.0.0.1", "192.168.0.1", "93.184.216.34",
                                     "2606:2800:220:1::1", "::ffff:127.0.0.1"])
def test_allowed_resolved_addresses(address):
    assert address_problem(address) is None


def test_not_an_address():
    assert "not an IP address" in address_problem("hooks.example.org")


def test_redaction_drops_userinfo_and_query_values():
    url = "https://svc:hunter2@hooks.example.org:8443/in?token=s3cret&x#frag"
    assert redact_url(url) == "https://hooks.example.org:8443/in?token=***&***"
    text = f"ConnectError: cannot reach {url} (is it up?)"
    redacted = redact_text(text)
    assert "hunter2" not in redacted and "svc" not in redacted and "s3cret" not in redacted
    assert redacted.startswith("ConnectError: cannot reach https://hooks.example.org:8443/in?***")
    assert redact_text("HTTP 503") == "HTTP 503" and redact_text("what? no") == "what? no"
