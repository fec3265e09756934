from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core_app.errors import DomainError
from sessions_app.backups import workspace_backup
from sessions_app.models import Session


class Command(BaseCommand):
    help = (
        "Save a session's /workspace to a .tar.gz through the runtime (no host paths). A running "
        "session is paused for the copy, so that its files are consistent, and unpaused afterwards."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("session", help="The session's id.")
        parser.add_argument("--output", required=True, type=Path, help="The .tar.gz file to write.")

    def handle(self, *args: Any, **options: Any) -> None:
        session = Session.objects.filter(public_id=options["session"]).first()
        if session is None:
            raise CommandError(f"No session {options['session']}.")
        try:
            entry = workspace_backup(session=session, output=options["output"])
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        size, digest = entry["size"], entry["sha256"]
        self.stdout.write(f"saved {session.public_id} to {options['output']} ({size} bytes, sha256 {digest})")
