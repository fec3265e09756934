"""What sessions_app adds to core_app's health check, metrics and maintenance rounds.
:meth:`sessions_app.apps.SessionsConfig.ready` calls :func:`register`; core_app imports no app."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from core_app.health import register_health_check
from core_app.metrics import register_collector
from core_app.scheduler import register_maintenance_task
from sessions_app.models import Session
from sessions_app.operations import sessions_cleanup, sessions_reconcile
from sessions_app.runtime import get_runtime
from sessions_app.warm_pool import warm_pool_refill


def check_docker() -> str:
    """The engine's version, or ``RuntimeUnavailable``."""
    return get_runtime().ping()


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
    register_collector(SessionsByStatus())
    # Reconcile first: a session whose container vanished is not "idle", it is suspended.
    register_maintenance_task("reconcile", reconcile_task)
    register_maintenance_task("cleanup", cleanup_task)
    # Last: reconcile has removed dead and extra members, and idle sessions have freed memory.
    register_maintenance_task("warm_pool", warm_pool_task)
