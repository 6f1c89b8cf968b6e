"""Server-side request forgery: a webhook URL reaches only public addresses or allowed ones."""

from __future__ import annotations

import ipaddress

import pytest

from notifications.addresses import AddressPolicy, check_url
from notifications.errors import WebhookUrlRefused

NOBODY = AddressPolicy.parse("", own=[ipaddress.ip_address("203.0.113.7")])


def fixed(*addresses: str):  # a resolver that answers without DNS
    return lambda host, port: list(addresses)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://127.8.9.10:8443/hook", "loopback"),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://10.0.0.1/hook", "private"),
        ("https://192.168.1.20/hook", "private"),
        ("https://[::1]/hook", "loopback"),
        ("https://[::ffff:127.0.0.1]/hook", "loopback"),
        ("https://[fe80::1]/hook", "link-local"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://224.0.0.1/hook", "multicast"),
        ("https://100.64.0.1/hook", "reserved"),
        ("https://203.0.113.7/hook", "own"),
    ],
)
def test_internal_addresses_are_refused(url: str, why: str) -> None:
    with pytest.raises(WebhookUrlRefused) as err:
        check_url(url, NOBODY)
    assert why in err.value.detail
    assert "BACKBONE_WEBHOOK_ALLOW_HOSTS" in err.value.detail


def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    with pytest.raises(WebhookUrlRefused, match="loopback"):
        check_url("https://localhost/hook", NOBODY)  # the real resolver: /etc/hosts
    with pytest.raises(WebhookUrlRefused, match="private"):
        check_url("https://hooks.example.org/x", NOBODY, fixed("93.184.216.34", "10.1.2.3"))


def test_https_is_required_except_for_allowed_hosts() -> None:
    with pytest.raises(WebhookUrlRefused, match="https"):
        check_url("http://hooks.example.org/x", NOBODY, fixed("93.184.216.34"))
    for url in ("ftp://hooks.example.org/x", "file:///etc/passwd", "gopher://x"):
        with pytest.raises(WebhookUrlRefused):
            check_url(url, NOBODY, fixed("93.184.216.34"))
    with pytest.raises(WebhookUrlRefused, match="credentials"):
        check_url("https://user:pw@hooks.example.org/x", NOBODY, fixed("93.184.216.34"))
    ok = check_url("https://hooks.example.org/x", NOBODY, fixed("93.184.216.34"))
    assert ok.addresses == ("93.184.216.34",) and ok.port == 443


def test_an_unresolvable_name_is_refused() -> None:
    def fails(host: str, port: int) -> list[str]:
        raise OSError("no such name")

    with pytest.raises(WebhookUrlRefused, match="resolve"):
        check_url("https://nowhere.invalid/x", NOBODY, fails)


def test_the_allowance_admits_named_addresses_networks_and_hosts() -> None:
    allow = AddressPolicy.parse("127.0.0.1, 10.1.0.0/16, ::1, hooks.internal", own=[])
    assert check_url("http://127.0.0.1:9000/x", allow).addresses == ("127.0.0.1",)
    check_url("https://10.1.2.3/x", allow)
    check_url("http://[::1]:8080/x", allow)
    check_url("http://hooks.internal/x", allow, fixed("10.9.9.9"))
    # Only what was named: another private network, and link-local, stay refused.
    with pytest.raises(WebhookUrlRefused):
        check_url("https://10.2.0.1/x", allow)
    with pytest.raises(WebhookUrlRefused):
        check_url("https://169.254.169.254/x", allow)
    with pytest.raises(WebhookUrlRefused):
        check_url("http://other.internal/x", allow, fixed("127.0.0.1"))
