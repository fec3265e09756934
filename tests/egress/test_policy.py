"""The egress policy: names, wildcards, ports, refused networks (v4, v6, v4 inside v6) and the
allow-addresses override. Pure decisions; name lookups go through the policy's resolver seam."""

from __future__ import annotations

import ipaddress

import pytest

from egress_app import policy
from egress_app.policy import EgressRefused, EgressUnresolvable, egress_destination


@pytest.fixture
def dns(monkeypatch):
    """A resolver we control: name -> addresses; unknown names do not resolve."""
    table: dict[str, list[str]] = {}
    lookups: list[str] = []

    def resolve(host: str, port: int):
        lookups.append(host)
        if host not in table:
            raise EgressUnresolvable(f"{host} could not be resolved.")
        return [ipaddress.ip_address(a) for a in table[host]]

    monkeypatch.setattr(policy, "resolve_host", resolve)
    table["lookups"] = lookups  # type: ignore[assignment]
    return table


@pytest.fixture(autouse=True)
def _policy_defaults(settings):
    settings.VIBECODE_EGRESS = "allowlist"
    settings.VIBECODE_EGRESS_ALLOW = ["pypi.org", "files.pythonhosted.org", "*.example.com"]
    settings.VIBECODE_EGRESS_PORTS = [443, 80]
    settings.VIBECODE_EGRESS_ALLOW_ADDRESSES = []


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("pypi.org", True),
        ("PyPI.org", True),
        ("pypi.org.", True),
        ("files.pythonhosted.org", True),
        ("evilpypi.org", False),
        ("pypi.org.evil.test", False),
        ("sub.pypi.org", False),  # an exact name allows no subdomain
        ("a.example.com", True),
        ("deep.a.example.com", True),
        ("example.com", False),  # *.suffix is for names under it, not the suffix itself
        ("notexample.com", False),
        ("example.com.evil.test", False),
    ],
)
def test_names_and_wildcards(host, allowed):
    assert policy.host_allowed(policy.normalize_host(host)) is allowed


@pytest.mark.parametrize("raw", ["", "   ", "exa mple.com", "a..b", "evil.test/x", "ünïcode.test", "x" * 300])
def test_garbage_is_not_a_host(raw):
    assert policy.normalize_host(raw) is None


def test_ip_literals_normalize_and_need_listing_exactly():
    assert policy.normalize_host("[::FFFF:127.0.0.1]") == "::ffff:7f00:1"
    assert policy.normalize_host("127.0.0.1") == "127.0.0.1"
    assert not policy.host_allowed("203.0.113.80")
    assert policy.host_allowed("203.0.113.80", patterns=["203.0.113.80"])


@pytest.mark.parametrize(
    "address",
    [
        "0.0.0.0",  # noqa: S104  (an address to refuse, not a bind)
        "0.1.2.3",
        "10.1.2.3",
        "100.64.0.1",
        "100.127.255.254",
        "127.0.0.1",
        "127.8.9.10",
        "169.254.169.254",  # the cloud metadata service
        "172.17.0.1",  # Docker's default bridge
        "172.30.89.5",  # the compose data network
        "192.0.0.8",
        "192.168.1.1",
        "198.18.0.1",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "fd00:ec2::254",  # AWS's IPv6 metadata service
        "fec0::1",
        "ff02::1",
        "100::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "::ffff:127.0.0.1",  # v4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
    ],
)
def test_refused_networks(address):
    assert policy.address_refused(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address",
    [
        "151.101.0.223",
        "8.8.8.8",
        # TEST-NET-3: Python's is_private says private, yet on this project's machines the
        # registries live there, behind a TLS-inspecting proxy. Not ours to refuse.
        "203.0.113.80",
        "198.51.100.7",
        "192.0.2.1",
        "100.128.0.1",  # just past CGNAT
        "172.32.0.1",  # just past 172.16/12
        "2a04:4e42::223",
        "::ffff:151.101.0.223",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses_pass(address):
    assert not policy.address_refused(ipaddress.ip_address(address))


def test_the_override_admits_exactly_the_listed_addresses(settings):
    settings.VIBECODE_EGRESS_ALLOW_ADDRESSES = [ipaddress.ip_network("127.0.0.1/32")]
    assert not policy.address_refused(ipaddress.ip_address("127.0.0.1"))
    assert not policy.address_refused(ipaddress.ip_address("::ffff:127.0.0.1"))
    assert policy.address_refused(ipaddress.ip_address("127.0.0.2"))
    assert policy.address_refused(ipaddress.ip_address("::1"))
    assert policy.address_refused(ipaddress.ip_address("10.0.0.1"))


def test_ports(settings):
    assert policy.port_allowed(443) and policy.port_allowed(80)
    assert not policy.port_allowed(22) and not policy.port_allowed(6379)
    settings.VIBECODE_EGRESS_PORTS = [8443]
    assert policy.port_allowed(8443) and not policy.port_allowed(443)


def test_an_allowed_name_at_a_public_address_is_a_destination(dns):
    dns["pypi.org"] = ["203.0.113.80", "2a04:4e42::223"]
    destination = egress_destination(host="PyPI.org", port=443)
    assert destination.host == "pypi.org" and destination.port == 443
    assert [str(a) for a in destination.addresses] == ["203.0.113.80", "2a04:4e42::223"]


@pytest.mark.parametrize(
    ("host", "port", "reason"),
    [
        ("evil.test", 443, "host not allowed"),
        ("pypi.org", 22, "port not allowed"),
        ("pypi.org", 6379, "port not allowed"),
        ("not a host", 443, "host not allowed"),
    ],
)
def test_refusals_say_why_and_resolve_nothing(dns, host, port, reason):
    with pytest.raises(EgressRefused) as refused:
        egress_destination(host=host, port=port)
    assert refused.value.reason == reason
    assert refused.value.status_code == 403
    assert dns["lookups"] == []  # type: ignore[comparison-overlap]


@pytest.mark.parametrize(
    "addresses", [["127.0.0.1"], ["203.0.113.80", "10.0.0.7"], ["::ffff:169.254.169.254"], ["::1"]]
)
def test_an_allowed_name_with_any_refused_address_is_refused(dns, addresses):
    dns["pypi.org"] = addresses
    with pytest.raises(EgressRefused) as refused:
        egress_destination(host="pypi.org", port=443)
    assert refused.value.reason == "address refused"
    assert refused.value.outcome == "refused_address"


def test_unresolvable_names_are_not_refusals(dns):
    with pytest.raises(EgressUnresolvable):
        egress_destination(host="pypi.org", port=443)


def test_open_mode_skips_the_names_never_the_addresses(settings, dns):
    settings.VIBECODE_EGRESS = "open"
    dns["anything.test"] = ["198.51.100.7"]
    dns["rebind.test"] = ["127.0.0.1"]
    assert egress_destination(host="anything.test", port=443).host == "anything.test"
    with pytest.raises(EgressRefused, match=r"127\.0\.0\.1"):
        egress_destination(host="rebind.test", port=443)


def test_off_refuses_everything(settings, dns):
    settings.VIBECODE_EGRESS = "off"
    dns["pypi.org"] = ["203.0.113.80"]
    with pytest.raises(EgressRefused) as refused:
        egress_destination(host="pypi.org", port=443)
    assert refused.value.reason == "egress is off"


def test_the_real_resolver_finds_localhost_and_refuses_it(settings):
    """No seam: ``localhost`` really resolves to loopback, which is refused even when listed."""
    settings.VIBECODE_EGRESS_ALLOW = ["localhost"]
    assert any(a.is_loopback for a in policy.resolve_host("localhost", 443))
    with pytest.raises(EgressRefused) as refused:
        egress_destination(host="localhost", port=443)
    assert refused.value.reason == "address refused"
