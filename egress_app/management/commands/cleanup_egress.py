from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from egress_app.services import egress_audit_prune


class Command(BaseCommand):
    help = (
        "Delete egress audit rows (admin: Egress connections) older than VIBECODE_EGRESS_AUDIT_DAYS "
        "(or --days). The in-server maintenance does this every round; this is for cron or by hand. "
        "A second run finds nothing to do."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=None, help="Keep this many days instead.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be done; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        days: int = options["days"] or settings.VIBECODE_EGRESS_AUDIT_DAYS
        if days < 1:
            raise CommandError("--days must be at least 1.")
        if options["dry_run"]:
            count = egress_audit_prune(days=days, dry_run=True, batch=2**62)
            self.stdout.write(
                self.style.SUCCESS(f"dry run: would delete {count} egress rows older than {days} days")
            )
            return
        total = 0
        while deleted := egress_audit_prune(days=days):
            total += deleted
        self.stdout.write(self.style.SUCCESS(f"deleted {total} egress rows older than {days} days"))
