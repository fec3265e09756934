"""Health checks for ``/api/health``: the database and the channel layer here, and whatever the
apps register in their ``ready()`` (sessions_app registers the Docker engine).

The overall status is ``down`` when a critical check fails (the database: nothing works without
it), ``degraded`` when another one does (logins and files of suspended sessions still work), and
``ok`` otherwise. Anyone may ask; only staff and the metrics scraper get the details (versions,
engine names, latencies), which would otherwise tell a stranger what to attack.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from core_app.errors import DomainError

logger = logging.getLogger(__name__)

CheckResult = dict[str, Any]
HealthCheck = Callable[[], str]
"""A check returns a one-line description of what answered, or raises."""


@dataclass(frozen=True)
class _Registered:
    check: HealthCheck
    critical: bool


_checks: dict[str, _Registered] = {}


def register_health_check(name: str, check: HealthCheck, *, critical: bool = False) -> None:
    """Add (or replace) the check called ``name``. A failing ``critical`` check makes the whole
    report ``down`` (HTTP 503); any other failing check makes it ``degraded``."""
    _checks[name] = _Registered(check, critical)


def registered_checks() -> list[str]:
    return list(_checks)


def _timed(name: str, check: HealthCheck) -> CheckResult:
    started = time.perf_counter()
    try:
        detail = check()
        result: CheckResult = {"status": "ok", "detail": detail}
    except DomainError as exc:  # our own words, safe for staff to read
        result = {"status": "error", "detail": f"{type(exc).__name__}: {exc.detail}"[:300]}
    except Exception as exc:  # a health check reports every failure, it never raises
        # Driver messages name hosts, ports and users: the log gets them, the answer not.
        logger.warning("health check %s failed: %s", name, exc)
        result = {"status": "error", "detail": type(exc).__name__}
    result["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return result


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return connection.vendor


async def _layer_round_trip() -> None:
    layer = get_channel_layer()
    if layer is None:
        raise RuntimeError("no channel layer configured")
    channel = await layer.new_channel("health.")
    await layer.send(channel, {"type": "health.ping"})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    if message.get("type") != "health.ping":
        raise RuntimeError("channel layer returned a different message")


def check_channel_layer() -> str:
    async_to_sync(_layer_round_trip)()
    layer = get_channel_layer()
    return type(layer).__name__


register_health_check("database", check_database, critical=True)
register_health_check("channel_layer", check_channel_layer)


def health_report(*, detailed: bool = False) -> dict[str, Any]:
    """``{"status": "ok"|"degraded"|"down", "checks": {name: {"status": "ok"|"error", ...}}}``.
    Only with ``detailed`` does each check also carry its ``detail`` and ``latency_ms``."""
    results = {name: _timed(name, registered.check) for name, registered in _checks.items()}
    failed = [name for name, result in results.items() if result["status"] != "ok"]
    if any(_checks[name].critical for name in failed):
        overall = "down"
    elif failed:
        overall = "degraded"
    else:
        overall = "ok"
    if not detailed:
        results = {name: {"status": result["status"]} for name, result in results.items()}
    return {"status": overall, "checks": results}
