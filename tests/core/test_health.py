from __future__ import annotations

import pytest
from django.test import override_settings

import sessions_app.runtime.docker as docker_backend

pytestmark = pytest.mark.django_db


def test_health_reports_every_real_component(client):
    for url in ("/api/health", "/health"):
        response = client.get(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["status"] == "ok", body
        assert body["checks"]["database"]["detail"] == "postgresql"
        assert body["checks"]["channel_layer"]["detail"] == "RedisChannelLayer"
        assert body["checks"]["docker"]["detail"].startswith("Docker Engine")


def test_health_is_degraded_without_docker(client, monkeypatch, tmp_path):
    monkeypatch.setattr(docker_backend, "_client", None)
    with override_settings(DOCKER_HOST=f"unix://{tmp_path}/no-such.sock"):
        response = client.get("/api/health")
    monkeypatch.setattr(docker_backend, "_client", None)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["docker"]["status"] == "error"
    assert "not reachable" in body["checks"]["docker"]["detail"]
