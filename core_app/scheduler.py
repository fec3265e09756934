"""Maintenance inside the server: every ``VIBECODE_CLEANUP_INTERVAL`` seconds, run the tasks the
apps registered in their ``ready()`` (sessions_app: reconcile the database with the engine, so a
Docker restart is noticed without an operator, then suspend idle sessions). With several
replicas only one runs a round per interval: a lock in the shared cache (Redis ``SET NX EX``
under the hood) decides. The cron commands keep working beside it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from django.conf import settings
from django.core.cache import cache
from django.db import close_old_connections

logger = logging.getLogger(__name__)

LOCK_KEY = "maintenance-lock"
_started = threading.Event()

MaintenanceTask = Callable[[], int]
"""A task does one round and returns how many actions it took."""

_tasks: dict[str, MaintenanceTask] = {}


def register_maintenance_task(name: str, task: MaintenanceTask) -> None:
    """Add (or replace) the task called ``name``. Each round runs the tasks in the order they were
    registered; a task that fails is logged and the next one still runs."""
    _tasks[name] = task


def registered_tasks() -> list[str]:
    return list(_tasks)


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
    close_old_connections()
    try:
        actions: dict[str, int] = {}
        for name, task in list(_tasks.items()):
            try:
                actions[name] = task()
            except Exception:  # the next round tries again; an outage must not kill the thread
                logger.warning("maintenance task %s failed", name, exc_info=True)
        if any(actions.values()):
            logger.info("maintenance: %s", ", ".join(f"{n} {name}" for name, n in actions.items()))
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
    logger.info("maintenance every %d s: %s", settings.VIBECODE_CLEANUP_INTERVAL, ", ".join(_tasks))
    return stop
