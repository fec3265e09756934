from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.operations import sessions_cleanup
from sessions_app.runtime.errors import RuntimeUnavailable


def plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


class Command(BaseCommand):
    help = (
        "Suspend running sessions idle past their timeout (the owner's quota, or --idle-minutes) and "
        "remove this installation's containers that have no session. Never deletes a volume: "
        "suspended sessions resume on their files, and orphans' volumes are kept for staff to inspect. "
        "Meant for cron, e.g. every 5 minutes; a second run finds nothing to do."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--idle-minutes",
            type=int,
            default=None,
            help="Suspend sessions idle this long, whatever their owner's quota says "
            "(default: each owner's idle timeout, VIBECODE_IDLE_TIMEOUT_MINUTES unless overridden).",
        )
        parser.add_argument("--dry-run", action="store_true", help="Say what would be done; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        idle_minutes: int | None = options["idle_minutes"]
        if idle_minutes is not None and idle_minutes < 0:
            raise CommandError("--idle-minutes cannot be negative.")
        dry_run: bool = options["dry_run"]
        try:
            report = sessions_cleanup(idle_minutes=idle_minutes, dry_run=dry_run)
        except RuntimeUnavailable as exc:
            raise CommandError(
                f"{exc.detail} (DOCKER_HOST is {settings.DOCKER_HOST}.) Sessions were not cleaned up."
            ) from exc

        for action in report.actions:
            self.stdout.write(("[dry run] " if dry_run else "") + action)
        suspended = report.counts["suspended"]
        orphans = report.counts["orphan_removed"]
        if dry_run:
            summary = (
                f"dry run: would suspend {plural(suspended, 'idle session')}, "
                f"remove {plural(orphans, 'orphan container')}; nothing was changed"
            )
        else:
            summary = (
                f"suspended {plural(suspended, 'idle session')}, "
                f"removed {plural(orphans, 'orphan container')}; volumes are never deleted"
            )
        self.stdout.write(self.style.SUCCESS(summary))
