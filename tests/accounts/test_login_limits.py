"""Sign-in limits: per client address and username, plus a slower cap per username across
addresses, so that one address cannot lock a username out for everyone (issue 13)."""

from __future__ import annotations

import ipaddress

import pytest
from django.test import override_settings

from tests.accounts.test_auth_api import assert_error
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "not-the-password"
BEHIND_NGINX = override_settings(VIBECODE_TRUSTED_PROXIES=[ipaddress.ip_network("172.30.90.10/32")])


def api_login(api, address: str, password: str = WRONG, **extra):
    return api.post(
        "/api/auth/login",
        {"username": "alice", "password": password},
        format="json",
        REMOTE_ADDR=address,
        **extra,
    )


def via_nginx(api, client_address: str, password: str = WRONG):
    # nginx is the direct peer; the client is the right-most address of X-Forwarded-For.
    return api_login(api, "172.30.90.10", password, HTTP_X_FORWARDED_FOR=client_address)


def test_eleven_bad_logins_from_one_address_do_not_lock_the_username_for_another(api, alice):
    statuses = [api_login(api, "203.0.113.1").status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    assert api_login(api, "203.0.113.1", PASSWORD).status_code == 429
    assert api_login(api, "198.51.100.2", PASSWORD).status_code == 200


@BEHIND_NGINX
def test_behind_nginx_the_address_is_the_forwarded_client(api, alice):
    statuses = [via_nginx(api, "203.0.113.1").status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    assert via_nginx(api, "203.0.113.1", PASSWORD).status_code == 429
    assert via_nginx(api, "198.51.100.2", PASSWORD).status_code == 200


@override_settings(VIBECODE_RATE_LOGIN_USERNAME="10/h")
def test_one_address_alone_never_reaches_the_username_cap(api, alice):
    for _ in range(11):
        api_login(api, "203.0.113.1")
    # Ten failures from one address, the cap is ten: it counted only a fifth of them.
    assert api_login(api, "198.51.100.2", PASSWORD).status_code == 200


@override_settings(VIBECODE_RATE_LOGIN_USERNAME="10/h")
def test_the_username_cap_across_addresses_still_bites(api, alice):
    for host in range(1, 5):
        assert [api_login(api, f"203.0.113.{host}").status_code for _ in range(3)] == [401] * 3
    # Four addresses have counted two failures each: 8 of 10; the right password still works.
    assert api_login(api, "198.51.100.2", PASSWORD).status_code == 200
    for _ in range(2):
        assert api_login(api, "203.0.113.5").status_code == 401
    # Ten: the username is refused from every address now, even with the right password.
    response = api_login(api, "198.51.100.3", PASSWORD)
    assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 3600
    # Another username is not affected.
    assert (
        api.post(
            "/api/auth/login",
            {"username": "bob", "password": "wrong"},
            format="json",
            REMOTE_ADDR="198.51.100.3",
        ).status_code
        == 401
    )


@override_settings(VIBECODE_RATE_LOGIN_USERNAME="3/h")
def test_failures_on_the_login_page_count_towards_the_username_cap(client, api, alice):
    for host in range(1, 4):
        address = f"203.0.113.{host}"
        page = client.post("/login", {"username": "Alice", "password": WRONG}, REMOTE_ADDR=address)
        assert page.status_code == 200 and b"Too many" not in page.content
    refused = client.post("/login", {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="198.51.100.2")
    assert refused.status_code == 429
    assert b"Too many sign-in attempts" in refused.content
    assert api_login(api, "198.51.100.3", PASSWORD).status_code == 429
