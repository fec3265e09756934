from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core_app.errors import DomainError
from sessions_app.backups import backup_all


class Command(BaseCommand):
    help = "Back up the database (pg_dump or SQLite's backup API) and every workspace, with a manifest."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", required=True, type=Path, help="A directory to write into.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = backup_all(output=options["output"])
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        count = len(report.manifest["workspaces"])
        self.stdout.write(
            f"backed up the {report.manifest['database']['engine']} database and {count} workspace(s) "
            f"to {report.directory} (manifest.json lists their checksums)"
        )
