"""Maintenance inside the server: every ``VIBECODE_CLEANUP_INTERVAL`` seconds, reconcile the
database with the engine (so a Docker restart is noticed without an operator) and suspend idle
sessions. With several replicas only one runs it per interval: a lock in the shared cache
(Redis ``SET NX EX`` under the hood) decides. The cron commands keep working beside it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections

logger = logging.getLogger(__name__)

LOCK_KEY = "maintenance-lock"
_started = threading.Event()


def maintenance_tick() -> bool:
    """Run one round if this process wins the lock; True when it ran."""
    owner = f"{socket.gethostname()}:{os.getpid()}"
    interval = settings.VIBECODE_CLEANUP_INTERVAL
    try:
        # The lock expires by itself just before the next round, so a crashed holder blocks nobody.
        if not cache.add(LOCK_KEY, owner, timeout=max(1, interval - 1)):
            return False
    except Exception:
        logger.warning("maintenance skipped: the cache (lock) is unavailable", exc_info=True)
        return False
    from sessions_app.operations import sessions_cleanup, sessions_reconcile

    close_old_connections()
    try:
        reconciled = sessions_reconcile()
        cleaned = sessions_cleanup()
        if reconciled.actions or cleaned.actions:
            logger.info(
                "maintenance: %d reconcile and %d cleanup actions",
                len(reconciled.actions),
                len(cleaned.actions),
            )
    except Exception:  # the next round tries again; an outage must not kill the thread
        logger.warning("maintenance round failed", exc_info=True)
    finally:
        close_old_connections()
    return True


def _loop(stop: threading.Event) -> None:
    while not stop.wait(settings.VIBECODE_CLEANUP_INTERVAL):
        maintenance_tick()


def start_scheduler() -> threading.Event | None:
    """Start the maintenance thread once per process, unless the interval is 0."""
    if settings.VIBECODE_CLEANUP_INTERVAL <= 0 or _started.is_set():
        return None
    _started.set()
    stop = threading.Event()
    threading.Thread(target=_loop, args=(stop,), name="vibecode-maintenance", daemon=True).start()
    logger.info("maintenance every %d s (reconcile and idle cleanup)", settings.VIBECODE_CLEANUP_INTERVAL)
    return stop
