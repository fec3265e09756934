"""/api/health: everyone learns whether each part answers; only staff and the metrics scraper
learn what answered (versions, engine names, latencies)."""

from __future__ import annotations

import pytest
from django.test import override_settings

import sessions_app.runtime.docker as docker_backend
from core_app import health

pytestmark = pytest.mark.django_db

TOKEN = "scrape-health-0123456789"
CHECKS = {"database", "channel_layer", "docker", "engines"}


def test_anonymous_callers_get_each_check_as_ok_or_error_only(client):
    for url in ("/api/health", "/health"):
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body == {"status": "ok", "checks": {name: {"status": "ok"} for name in CHECKS}}
        for secret in (b"Docker Engine", b"postgresql", b"Redis", b"latency"):
            assert secret not in response.content


def test_signed_in_users_who_are_not_staff_get_no_details(client, alice):
    client.force_login(alice)
    body = client.get("/api/health").json()
    assert all(set(check) == {"status"} for check in body["checks"].values()), body


def test_staff_get_every_real_components_details(client, staff):
    client.force_login(staff)
    body = client.get("/api/health").json()
    assert body["status"] == "ok", body
    assert body["checks"]["database"]["detail"] == "postgresql"
    assert body["checks"]["channel_layer"]["detail"] == "RedisChannelLayer"
    assert body["checks"]["docker"]["detail"].startswith("Docker Engine")
    assert all(check["latency_ms"] >= 0 for check in body["checks"].values())


@override_settings(VIBECODE_METRICS_TOKEN=TOKEN)
def test_the_metrics_token_gets_details_only_from_its_network(client):
    inside = client.get("/api/health", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").json()
    assert inside["checks"]["docker"]["detail"].startswith("Docker Engine")
    wrong = client.get("/api/health", HTTP_AUTHORIZATION="Bearer wrong-token").json()
    assert "detail" not in wrong["checks"]["docker"]
    outside = client.get("/api/health", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", REMOTE_ADDR="203.0.113.9")
    assert outside.status_code == 200
    assert "detail" not in outside.json()["checks"]["docker"]


def test_health_is_degraded_without_docker(client, staff, monkeypatch, tmp_path):
    client.force_login(staff)
    monkeypatch.setattr(docker_backend, "_client", None)
    with override_settings(DOCKER_HOST=f"unix://{tmp_path}/no-such.sock"):
        response = client.get("/api/health")
        anonymous = client.__class__().get("/api/health")
    monkeypatch.setattr(docker_backend, "_client", None)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["docker"]["status"] == "error"
    assert "not reachable" in body["checks"]["docker"]["detail"]
    assert anonymous.json()["status"] == "degraded"
    assert anonymous.json()["checks"]["docker"] == {"status": "error"}


def test_a_registered_check_is_reported_and_a_critical_failure_means_down(client, monkeypatch):
    monkeypatch.setattr(health, "_checks", dict(health._checks))

    def broken() -> str:
        raise RuntimeError("password=hunter2 at db.internal")

    health.register_health_check("ledger", lambda: "fine")
    assert client.get("/api/health").json()["checks"]["ledger"] == {"status": "ok"}
    health.register_health_check("vault", broken, critical=True)
    response = client.get("/api/health")
    assert response.status_code == 503
    assert response.json()["status"] == "down"
    assert response.json()["checks"]["vault"] == {"status": "error"}
    assert b"hunter2" not in response.content


def test_sessions_app_registers_its_docker_check_from_ready():
    assert health.registered_checks()[:2] == ["database", "channel_layer"]
    assert "docker" in health.registered_checks()
