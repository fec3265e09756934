"""In-server maintenance: one round per interval, whichever process asks first."""

from __future__ import annotations

import threading

import pytest
from django.test import override_settings

from core_app import scheduler
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


@override_settings(VIBECODE_CLEANUP_INTERVAL=30)
def test_a_failing_task_does_not_stop_the_ones_after_it(monkeypatch):
    ran: list[str] = []

    def broken() -> int:
        ran.append("broken")
        raise RuntimeError("the engine is down")

    monkeypatch.setattr(scheduler, "_tasks", {})
    scheduler.register_maintenance_task("broken", broken)
    scheduler.register_maintenance_task("after", lambda: ran.append("after") or 0)
    assert tick_in_a_thread() is True
    assert ran == ["broken", "after"]


def test_sessions_app_registers_reconcile_before_cleanup():
    assert scheduler.registered_tasks()[:2] == ["reconcile", "cleanup"]
    assert "egress_audit" in scheduler.registered_tasks()  # egress_app prunes its audit rows
