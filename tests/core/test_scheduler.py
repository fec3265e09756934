"""In-server maintenance: one round per interval, whichever process asks first."""

from __future__ import annotations

import threading

import pytest
from django.test import override_settings

from core_app.scheduler import maintenance_tick
from sessions_app import services
from sessions_app.models import Session

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.docker]


def tick_in_a_thread() -> bool:
    """As in the server: the maintenance thread has a database connection of its own."""
    outcome: list[bool] = []
    thread = threading.Thread(target=lambda: outcome.append(maintenance_tick()))
    thread.start()
    thread.join(60)
    return outcome[0]


@override_settings(VIBECODE_CLEANUP_INTERVAL=30)
def test_only_one_round_runs_per_interval_whoever_asks(alice, sandboxes):
    session = services.session_create(user=alice, name="idle")
    Session.objects.filter(pk=session.pk).update(last_activity_at="2000-01-01T00:00:00Z")
    assert tick_in_a_thread() is True, "the first caller takes the lock (in Redis) and runs"
    assert Session.objects.get(pk=session.pk).status == "suspended", "idle cleanup ran"
    assert tick_in_a_thread() is False, "a second caller (another replica) in the same interval does not"
