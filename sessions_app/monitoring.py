"""What sessions_app adds to core_app's health check, metrics and maintenance rounds.
:meth:`sessions_app.apps.SessionsConfig.ready` calls :func:`register`; core_app imports no app."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core_app.errors import DomainError
from core_app.health import register_health_check
from core_app.metrics import register_collector
from core_app.scheduler import register_maintenance_task
from sessions_app.errors import EngineUnavailable
from sessions_app.models import LOCAL_ENGINE, Engine, Session
from sessions_app.operations import sessions_cleanup, sessions_reconcile
from sessions_app.runtime import get_runtime
from sessions_app.warm_pool import warm_pool_refill


def check_docker() -> str:
    """The engine's version, or ``RuntimeUnavailable``."""
    return get_runtime().ping()


def check_engines() -> str:
    """Every engine's state and whether it answers (local is the ``docker`` check): one line,
    ``name: state, answers|unavailable`` per engine; raises when an active engine other than
    local does not answer, so the report says ``degraded``."""
    runtime = get_runtime()
    parts, down = [], []
    for engine in Engine.objects.order_by("name"):
        if engine.name == LOCAL_ENGINE:
            parts.append(f"{engine.name}: {engine.state}")
            continue
        try:
            runtime.ping(engine=engine.name)  # type: ignore[call-arg]
            parts.append(f"{engine.name}: {engine.state}, answers")
        except DomainError:
            parts.append(f"{engine.name}: {engine.state}, unavailable")
            if engine.state != Engine.State.DISABLED:
                down.append(engine.name)
    summary = "; ".join(parts) or "local"
    if down:
        raise EngineUnavailable(f"{summary} (down: {', '.join(down)})")
    return summary


class SessionsByStatus(Collector):
    """``vibecode_sessions{status=...}``, counted in the database when scraped."""

    def describe(self) -> list[GaugeMetricFamily]:
        # Registration calls this instead of collect(), so no query runs while apps load.
        return [GaugeMetricFamily("vibecode_sessions", "Sessions by status.", labels=["status"])]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily("vibecode_sessions", "Sessions by status.", labels=["status"])
        counts = dict(
            Session.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n")
        )
        for status in Session.Status.values:
            family.add_metric([status], counts.get(status, 0))
        yield family


def reconcile_task() -> int:
    return len(sessions_reconcile().actions)


def cleanup_task() -> int:
    return len(sessions_cleanup().actions)


def warm_pool_task() -> int:
    return warm_pool_refill()


def register() -> None:
    register_health_check("docker", check_docker)
    register_health_check("engines", check_engines)
    register_collector(SessionsByStatus())
    # Reconcile first: a session whose container vanished is not "idle", it is suspended.
    register_maintenance_task("reconcile", reconcile_task)
    register_maintenance_task("cleanup", cleanup_task)
    # Last: reconcile has removed dead and extra members, and idle sessions have freed memory.
    register_maintenance_task("warm_pool", warm_pool_task)
