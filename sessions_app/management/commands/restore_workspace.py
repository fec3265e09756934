from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core_app.errors import DomainError
from sessions_app.backups import workspace_restore
from sessions_app.models import Session
from sessions_app.services import session_create


class Command(BaseCommand):
    help = (
        "Restore a workspace backup into a session (--into SESSION; refuses to overwrite files "
        "unless --force) or into a new session of a user (--new-session-for USER)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path, help="A .tar.gz made by backup_workspace.")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--into", metavar="SESSION", help="An existing session's id.")
        target.add_argument("--new-session-for", metavar="USER", help="A username; a new session is made.")
        parser.add_argument("--force", action="store_true", help="Replace the session's files.")

    def handle(self, *args: Any, **options: Any) -> None:
        archive: Path = options["archive"]
        if not archive.is_file():
            raise CommandError(f"No such file: {archive}")
        force = options["force"]
        try:
            if options["into"]:
                session = Session.objects.filter(public_id=options["into"]).first()
                if session is None:
                    raise CommandError(f"No session {options['into']}.")
            else:
                user = get_user_model().objects.filter(username=options["new_session_for"]).first()
                if user is None:
                    raise CommandError(f"No user {options['new_session_for']}.")
                session = session_create(user=user, name=f"Restored from {archive.name}"[:100])
                force = True  # a brand-new session: nothing of the user's to lose
            with archive.open("rb") as handle:
                workspace_restore(volume=session.volume_name, archive=handle, force=force)
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        self.stdout.write(f"restored {archive} into session {session.public_id}")
