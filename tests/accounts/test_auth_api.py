from __future__ import annotations

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.test import override_settings
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) >= {"detail", "code"}, body
    assert isinstance(body["detail"], str) and body["detail"]
    if code is not None:
        assert body["code"] == code, body
    return body


def login(api, username="alice", password=PASSWORD):
    return api.post("/api/auth/login", {"username": username, "password": password}, format="json")


def test_it_logs_in_and_answers_me(api, alice):
    tokens = login(api).json()
    assert set(tokens) == {"access", "refresh"}
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {tokens['access']}")
    me = api.get("/api/me")
    assert me.status_code == 200
    assert me.json() == {"id": alice.id, "username": "alice", "email": "alice@example.com", "is_staff": False}


def test_it_refuses_a_wrong_password_with_401(api, alice):
    response = login(api, password="wrong")
    assert_error(response, 401, "no_active_account")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_it_answers_400_to_malformed_json(api):
    response = api.post("/api/auth/login", "{not json", content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_it_answers_400_to_missing_fields(api):
    body = assert_error(api.post("/api/auth/login", {}, format="json"), 400, "invalid")
    assert "username" in body["errors"]


def _me_with(api, token: str):
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api.get("/api/me")


def test_it_refuses_a_tampered_token(api, alice):
    token = str(AccessToken.for_user(alice))
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["user_id"] = str(alice.id + 1)
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_error(_me_with(api, f"{header}.{forged}.{signature}"), 401, "token_not_valid")


def test_it_refuses_an_alg_none_token(api, alice):
    claims = dict(AccessToken.for_user(alice).payload)
    token = jwt.encode(claims, key=None, algorithm="none")
    assert_error(_me_with(api, token), 401, "token_not_valid")


def test_it_refuses_a_token_signed_with_another_key(api, alice):
    claims = dict(AccessToken.for_user(alice).payload)
    token = jwt.encode(claims, key="another-key-of-sufficient-length-0123456789", algorithm="HS256")
    assert_error(_me_with(api, token), 401, "token_not_valid")


def test_it_refuses_an_expired_token(api, alice):
    token = AccessToken.for_user(alice)
    token.set_exp(lifetime=-timedelta(seconds=1))
    assert_error(_me_with(api, str(token)), 401, "token_not_valid")


def test_it_refuses_no_credentials_with_401(api):
    assert_error(api.get("/api/me"), 401, "not_authenticated")


def test_refresh_rotates_and_the_old_token_stops_working(api, alice):
    old = login(api).json()["refresh"]
    rotated = api.post("/api/auth/refresh", {"refresh": old}, format="json")
    assert rotated.status_code == 200
    assert set(rotated.json()) == {"access", "refresh"}
    assert rotated.json()["refresh"] != old
    assert_error(api.post("/api/auth/refresh", {"refresh": old}, format="json"), 401, "token_not_valid")
    # The new one works.
    again = api.post("/api/auth/refresh", {"refresh": rotated.json()["refresh"]}, format="json")
    assert again.status_code == 200


def test_logout_blacklists_the_refresh_token(api, alice):
    refresh = login(api).json()["refresh"]
    assert api.post("/api/auth/logout", {"refresh": refresh}, format="json").status_code == 204
    assert_error(api.post("/api/auth/refresh", {"refresh": refresh}, format="json"), 401, "token_not_valid")


def test_logout_with_garbage_answers_401(api):
    assert_error(api.post("/api/auth/logout", {"refresh": "garbage"}, format="json"), 401, "token_not_valid")


def test_an_access_token_is_not_a_refresh_token(api, alice):
    access = str(RefreshToken.for_user(alice).access_token)
    assert_error(api.post("/api/auth/refresh", {"refresh": access}, format="json"), 401, "token_not_valid")


def test_registration_is_closed_by_default(api):
    body = {"username": "carol", "email": "carol@example.com", "password": "a-long-unusual-pass"}
    assert_error(api.post("/api/auth/register", body, format="json"), 403, "signup_disabled")


@override_settings(VIBECODE_ALLOW_SIGNUP=True)
def test_registration_when_open(api):
    body = {"username": "carol", "email": "carol@example.com", "password": "a-long-unusual-pass"}
    created = api.post("/api/auth/register", body, format="json")
    assert created.status_code == 201
    assert created.json()["username"] == "carol"
    assert login(api, "carol", "a-long-unusual-pass").status_code == 200
    assert_error(api.post("/api/auth/register", body, format="json"), 400, "invalid")
    weak = {"username": "dave", "email": "d@example.com", "password": "123"}
    assert_error(api.post("/api/auth/register", weak, format="json"), 400, "invalid")


def test_jwt_settings_follow_the_seed_guide():
    assert settings.SIMPLE_JWT["ALGORITHM"] == "HS256"
    assert settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"] == timedelta(minutes=60)


def test_the_session_cookie_authenticates_the_api_with_csrf(alice):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    assert client.get("/api/me").json()["username"] == "alice"
    # An unsafe method without the CSRF token is refused before anything runs, as JSON.
    assert_error(client.delete("/api/me"), 403, "permission_denied")
