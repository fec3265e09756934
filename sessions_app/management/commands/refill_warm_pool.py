from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from sessions_app.runtime.errors import RuntimeUnavailable
from sessions_app.warm_pool import warm_pool_members, warm_pool_refill, warm_pool_target


class Command(BaseCommand):
    help = (
        "Fill the warm pool up to its target (VIBECODE_WARM_POOL, fewer when the engine is short of "
        "memory), one member at a time and one replica at a time. `make run` and the compose backend "
        "run it at start; the maintenance rounds and every claim refill it afterwards. Shrinking is "
        "reconcile_sessions' job. A second run finds nothing to do."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            made = warm_pool_refill()
            target = warm_pool_target()
        except RuntimeUnavailable as exc:
            raise CommandError(
                f"{exc.detail} (DOCKER_HOST is {settings.DOCKER_HOST}.) Nothing was made."
            ) from exc
        held = len(warm_pool_members())
        size = settings.VIBECODE_WARM_POOL
        summary = f"warm pool: made {made}, holds {held}, target {target} (VIBECODE_WARM_POOL={size})"
        self.stdout.write(self.style.SUCCESS(summary))
