"""The SSRF guard: which URLs and addresses a webhook may use, and the signature's format."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket

import pytest

from webapp.webhooks import signing
from webapp.webhooks.targets import TargetRefused, check_url, checked_addresses, parse_url, refusal

REFUSED = [
    "127.0.0.1",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "0.0.0.0",  # noqa: S104 (an address under test)
    "::1",
    "fe80::1",
    "fc00::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "224.0.0.1",
    "ff02::1",
    "::",
]
ALLOWED = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_private_and_special_addresses_are_refused(address):
    assert refusal(ipaddress.ip_address(address), allow_private=False) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address):
    assert refusal(ipaddress.ip_address(address), allow_private=False) is None


def test_the_setting_allows_private_but_never_multicast_or_unspecified():
    for address in ("127.0.0.1", "10.0.0.1", "::1", "169.254.169.254"):
        assert refusal(ipaddress.ip_address(address), allow_private=True) is None
    for address in ("224.0.0.1", "0.0.0.0", "::", "255.255.255.255"):  # noqa: S104
        assert refusal(ipaddress.ip_address(address), allow_private=True) is not None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/x",
        "http://user:pass@example.com/",
        "http:///nohost",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "javascript:alert(1)",
        "http://127.0.0.1/",
        "http://localhost:8080/hook",
        "http://2130706433/",  # 127.0.0.1 written as one number
        "http://0x7f.1/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_urls_refused_without_the_setting(url):
    with pytest.raises(TargetRefused):
        check_url(url, allow_private=False)


@pytest.mark.parametrize("allow_private", [False, True])
def test_port_zero_is_refused_whatever_the_setting(allow_private):
    with pytest.raises(TargetRefused, match="port"):
        parse_url("http://127.0.0.1:0/hook")
    with pytest.raises(TargetRefused, match="port"):
        check_url("https://example.com:0/", allow_private=allow_private)


def test_url_parts():
    target = parse_url("https://Hooks.Example.com:8443/in/x?y=1#frag")
    assert (target.scheme, target.host, target.port, target.path) == (
        "https",
        "hooks.example.com",
        8443,
        "/in/x?y=1",
    )
    assert target.host_header == "hooks.example.com:8443"
    assert parse_url("http://[::1]/").host_header == "[::1]"
    assert parse_url("http://bücher.example/").host == "xn--bcher-kva.example"


def test_a_name_with_one_private_address_among_public_ones_is_refused():
    def resolver(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    with pytest.raises(TargetRefused, match=r"10\.0\.0\.7"):
        checked_addresses(parse_url("https://rebind.example/"), allow_private=False, resolver=resolver)
    addresses = checked_addresses(parse_url("https://rebind.example/"), allow_private=True, resolver=resolver)
    assert [str(a) for a in addresses] == ["93.184.216.34", "10.0.0.7"]


def test_signature_header_is_hmac_sha256_over_time_dot_body():
    secret, body, stamp = "whsec_test", b'{"id":"x"}', 1767225600
    expected = hmac.new(secret.encode(), b"1767225600." + body, hashlib.sha256).hexdigest()
    assert signing.header(secret, body, stamp) == f"t=1767225600,v1={expected}"
    assert signing.new_secret() != signing.new_secret()


def test_a_refused_host_is_said_in_one_sentence():
    """Found from outside: "the host '224.0.0.1' resolves to 224.0.0.1 is a multicast ..."."""
    with pytest.raises(TargetRefused) as refused:
        check_url("http://224.0.0.1/hook", allow_private=True)
    assert (
        str(refused.value)
        == "the host '224.0.0.1' resolves to 224.0.0.1, a multicast, broadcast or unspecified address"
    )


def test_a_connection_failure_is_logged_without_urllib3s_connection_object():
    """Found from outside: the delivery log read "NewConnectionError: Watched(host=..., port=...): ..."."""
    import urllib3

    from webapp.webhooks.transport import _said

    pool = urllib3.HTTPConnectionPool("127.0.0.1", 9, retries=False)
    with pytest.raises(urllib3.exceptions.NewConnectionError) as failed:
        pool.request("GET", "/")
    said = _said(failed.value)
    assert said.startswith("NewConnectionError: Failed to establish a new connection"), said
    assert "HTTPConnection(" not in said
