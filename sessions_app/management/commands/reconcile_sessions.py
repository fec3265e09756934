from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_app.operations import sessions_reconcile
from sessions_app.runtime.errors import RuntimeUnavailable


class Command(BaseCommand):
    help = (
        "Bring the database and the container engine back into agreement after a crash or a restart: "
        "sessions whose container stopped or vanished become suspended (or error when their volume "
        "is gone too), suspended sessions' running containers are stopped, sessions stuck creating or "
        "deleting are finished, and containers with no session are removed (their volumes are kept). "
        "Safe to run twice: the second run has nothing to do."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Say what would be done; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run: bool = options["dry_run"]
        try:
            report = sessions_reconcile(dry_run=dry_run)
        except RuntimeUnavailable as exc:
            # Without the engine there is nothing to compare the database with: change nothing.
            raise CommandError(
                f"{exc.detail} (DOCKER_HOST is {settings.DOCKER_HOST}.) Nothing was reconciled."
            ) from exc

        for action in report.actions:
            self.stdout.write(("[dry run] " if dry_run else "") + action)
        count = len(report.actions)
        actions = f"{count} action{'' if count == 1 else 's'}"
        if not count:
            summary = "nothing to do"
        elif dry_run:
            summary = f"dry run: {actions} would be taken; nothing was changed"
        else:
            summary = f"reconciled: {actions} taken"
        self.stdout.write(self.style.SUCCESS(summary))
