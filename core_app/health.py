"""Health checks for ``/api/health``: database, channel layer and Docker engine.

The overall status is ``down`` when the database does not answer (nothing works without it),
``degraded`` when the channel layer or Docker does not (logins and files of suspended sessions
still work), and ``ok`` otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection

from core_app.errors import DomainError

logger = logging.getLogger(__name__)

CheckResult = dict[str, Any]


def _timed(check: Callable[[], str]) -> CheckResult:
    started = time.perf_counter()
    try:
        detail = check()
        result: CheckResult = {"status": "ok", "detail": detail}
    except DomainError as exc:  # our own words, safe for anyone to read
        result = {"status": "error", "detail": f"{type(exc).__name__}: {exc.detail}"[:300]}
    except Exception as exc:  # a health check reports every failure, it never raises
        # Driver messages name hosts, ports and users: the log gets them, the anonymous answer not.
        logger.warning("health check %s failed: %s", check.__name__, exc)
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


def check_docker() -> str:
    from sessions_app.runtime import get_runtime

    return get_runtime().ping()


def health_report() -> dict[str, Any]:
    checks = {
        "database": _timed(check_database),
        "channel_layer": _timed(check_channel_layer),
        "docker": _timed(check_docker),
    }
    if checks["database"]["status"] != "ok":
        overall = "down"
    elif any(check["status"] != "ok" for check in checks.values()):
        overall = "degraded"
    else:
        overall = "ok"
    return {"status": overall, "checks": checks}
