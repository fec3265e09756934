"""Set up Django for a benchmark: a throwaway SQLite database in a temporary var/ directory, and
a sandbox instance label of its own, so nothing a benchmark makes can touch real sessions."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def bench_django() -> Iterator[Any]:
    """Yield a user; on exit, remove every sandbox of the benchmark instance, volumes included.

    One process may run several benchmarks (``bench.run``): the first call sets up Django and its
    database, later ones reuse them, so subprocesses started with ``os.environ`` agree."""
    if os.environ.get("VIBECODE_INSTANCE") != "bench":
        # The temporary var/ has no workspaces filesystem: measure with the checkout's disk quotas
        # (scripts/setup.sh mounted them at var/workspaces), as `make run` serves.
        workspaces = os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "var", "workspaces"
        )
        if os.path.ismount(workspaces):
            os.environ.setdefault("VIBECODE_WORKSPACES_DIR", workspaces)
        os.environ["VIBECODE_VAR_DIR"] = tempfile.mkdtemp(prefix="vibecode-bench-")
    os.environ["VIBECODE_INSTANCE"] = "bench"
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vibecode_project.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    # The cold path unless a benchmark turns the pool on for itself (bench/warm_pool.py does).
    os.environ.setdefault("VIBECODE_WARM_POOL", "0")
    # Benchmarks call the API far faster than a person; the limits are not what is measured.
    rates = ("VIBECODE_RATE_API", "VIBECODE_RATE_EXEC", "VIBECODE_RATE_SAVE")
    for rate in (*rates, "VIBECODE_RATE_TERMINAL_USER", "VIBECODE_RATE_TERMINAL_IP"):
        os.environ[rate] = "100000/m"
    # The terminal benchmark's one user holds hundreds of idle terminals for its memory figure.
    os.environ.update(
        VIBECODE_MAX_SESSIONS="1000", VIBECODE_MAX_RUNNING="1000", VIBECODE_MAX_TERMINALS_PER_USER="1000"
    )

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    user, _ = get_user_model().objects.get_or_create(username="bench")
    try:
        yield user
    finally:
        from bench.common import docker_client

        client = docker_client()
        for container in client.api.containers(all=True, filters={"label": "vibecode.instance=bench"}):
            client.api.remove_container(container["Id"], force=True)
        for volume in client.api.volumes(filters={"label": "vibecode.instance=bench"}).get("Volumes") or []:
            client.api.remove_volume(volume["Name"], force=True)
            remove_workspace_storage(volume)


def remove_workspace_storage(volume: dict[str, Any]) -> None:
    """Delete the quota-limited subvolume behind a removed volume (a no-op for plain ones)."""
    from django.conf import settings

    from sessions_app.runtime import btrfs

    device = (volume.get("Options") or {}).get("device") or ""
    if btrfs.is_under(device, settings.VIBECODE_WORKSPACES_DIR):
        btrfs.workspace_delete(path=device)
