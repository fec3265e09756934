from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core_app.errors import DomainError
from sessions_app.backups import restore_all


class Command(BaseCommand):
    help = (
        "Restore a backup_all directory: checksums are verified first, then the database and every "
        "workspace. Workspaces that already have files are refused unless --force."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path)
        parser.add_argument("--force", action="store_true", help="Replace workspaces that have files.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not (options["directory"] / "manifest.json").is_file():
            raise CommandError(f"{options['directory']} has no manifest.json: not a backup_all directory.")
        try:
            manifest = restore_all(directory=options["directory"], force=options["force"])
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"restored the database and {len(manifest['workspaces'])} workspace(s)")
