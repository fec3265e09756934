from __future__ import annotations

import random

import pytest
from django.test import override_settings

from tests.accounts.test_auth_api import assert_error
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def test_the_101st_request_in_a_minute_answers_429_with_retry_after(alice_api):
    for _ in range(100):
        assert alice_api.get("/api/me").status_code == 200
    response = alice_api.get("/api/me")
    assert_error(response, 429, "throttled")
    assert 1 <= int(response["Retry-After"]) <= 60


def test_limits_are_per_user(alice_api, bob_api):
    for _ in range(100):
        alice_api.get("/api/me")
    assert alice_api.get("/api/me").status_code == 429
    assert bob_api.get("/api/me").status_code == 200


def _random_ip() -> str:
    return ".".join(str(random.randint(1, 254)) for _ in range(4))


def test_login_attempts_are_throttled_whatever_x_forwarded_for_says(api, alice):
    statuses = [
        api.post(
            "/api/auth/login",
            {"username": "alice", "password": "wrong"},
            format="json",
            HTTP_X_FORWARDED_FOR=_random_ip(),
        ).status_code
        for _ in range(20)
    ]
    assert statuses[:10] == [401] * 10
    assert statuses[10:] == [429] * 10
    # Even the right password waits now: the limit is on attempts, not failures.
    response = api.post("/api/auth/login", {"username": "alice", "password": PASSWORD}, format="json")
    assert_error(response, 429, "throttled")
    assert int(response["Retry-After"]) >= 1


def test_login_limit_is_per_username(api, alice, bob):
    for _ in range(11):
        api.post("/api/auth/login", {"username": "alice", "password": "wrong"}, format="json")
    response = api.post("/api/auth/login", {"username": "bob", "password": PASSWORD}, format="json")
    assert response.status_code == 200


@override_settings(VIBECODE_TRUSTED_PROXIES=[__import__("ipaddress").ip_network("127.0.0.0/8")])
def test_a_trusted_proxy_may_name_the_client(api, alice):
    for _ in range(10):
        api.post(
            "/api/auth/login",
            {"username": "alice", "password": "wrong"},
            format="json",
            HTTP_X_FORWARDED_FOR="203.0.113.7",
            REMOTE_ADDR="127.0.0.1",
        )
    limited = api.post(
        "/api/auth/login",
        {"username": "alice", "password": PASSWORD},
        format="json",
        HTTP_X_FORWARDED_FOR="203.0.113.7",
        REMOTE_ADDR="127.0.0.1",
    )
    assert limited.status_code == 429
    other_client = api.post(
        "/api/auth/login",
        {"username": "alice", "password": PASSWORD},
        format="json",
        HTTP_X_FORWARDED_FOR="198.51.100.9",
        REMOTE_ADDR="127.0.0.1",
    )
    assert other_client.status_code == 200


def test_the_login_page_is_throttled_too(client, alice):
    for _ in range(10):
        client.post("/login", {"username": "alice", "password": "wrong"})
    response = client.post("/login", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 429
    assert b"Too many sign-in attempts" in response.content
