from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core_app.errors import DomainError
from sessions_app.backups import restore_all


class Command(BaseCommand):
    help = (
        "Restore a backup_all directory: checksums are verified first, then the database and every "
        "workspace, then the sessions are reconciled with the engine. Workspaces that already have "
        "files are refused unless --force, and so are workspaces of running sessions. --dry-run "
        "makes every check and lists what would be done, changing nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--force", action="store_true", help="Replace workspaces that have files.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be done; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not (options["directory"] / "manifest.json").is_file():
            raise CommandError(f"{options['directory']} has no manifest.json: not a backup_all directory.")
        dry_run: bool = options["dry_run"]
        try:
            report = restore_all(directory=options["directory"], force=options["force"], dry_run=dry_run)
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        count = len(report.manifest["workspaces"])
        if dry_run:
            for action in report.actions:
                self.stdout.write(f"[dry run] {action}")
            self.stdout.write(
                f"dry run: would restore the database and {count} workspace(s); nothing was changed"
            )
        else:
            self.stdout.write(f"restored the database and {count} workspace(s)")
