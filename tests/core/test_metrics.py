"""/metrics: who may read it, and counters that move by what a workload did."""

from __future__ import annotations

import pytest
from django.test import override_settings
from prometheus_client.parser import text_string_to_metric_families

pytestmark = [pytest.mark.django_db]


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content
    values = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def value(values, name, **labels) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def test_metrics_answer_staff_and_refuse_everyone_else(client, staff, alice):
    assert client.get("/metrics").status_code == 403
    client.force_login(alice)
    assert client.get("/metrics").status_code == 403
    client.force_login(staff)
    assert b"vibecode_sessions" in client.get("/metrics").content


@override_settings(VIBECODE_METRICS_TOKEN="scrape-me-0123456789")
def test_a_scraper_token_works_only_from_its_network(client):
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me-0123456789").status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    outside = client.get(
        "/metrics", HTTP_AUTHORIZATION="Bearer scrape-me-0123456789", REMOTE_ADDR="203.0.113.9"
    )
    assert outside.status_code == 403


@pytest.mark.docker
def test_counters_move_by_what_a_workload_did(client, staff, alice_api, alice, sandboxes):
    client.force_login(staff)
    before = scrape(client)
    created = alice_api.post("/api/vibecode/sessions/create", format="json").json()
    base = f"/api/vibecode/sessions/{created['session_id']}"
    for _ in range(3):
        assert alice_api.post(f"{base}/exec", {"argv": ["true"]}, format="json").status_code == 200
    timed_out = alice_api.post(f"{base}/exec", {"argv": ["sleep", "5"], "timeout": 0.5}, format="json")
    assert timed_out.json()["timed_out"] is True
    for _ in range(6):  # up to the limit of 10 a minute...
        assert alice_api.post(f"{base}/exec", {"argv": ["true"]}, format="json").status_code == 200
    assert alice_api.post(f"{base}/exec", {"argv": ["true"]}, format="json").status_code == 429  # ...and over
    after = scrape(client)

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("vibecode_session_create_seconds_count") == 1
    assert moved("vibecode_execs_total", outcome="completed") == 9
    assert moved("vibecode_execs_total", outcome="timeout") == 1
    assert moved("vibecode_exec_seconds_count") == 10
    assert moved("vibecode_rate_limit_refusals_total", group="exec") == 1
    assert value(after, "vibecode_sessions", status="running") == 1
