from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from core_app.errors import DomainError
from sessions_app.backups import workspace_restore, workspace_restore_new_session
from sessions_app.models import Session


class Command(BaseCommand):
    help = (
        "Restore a workspace backup into a suspended session (--into SESSION; refuses a running one, "
        "and refuses to overwrite files unless --force) or into a new session of a user "
        "(--new-session-for USER). --dry-run checks everything and changes nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("archive", type=Path, help="A .tar.gz made by backup_workspace.")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--into", metavar="SESSION", help="An existing, suspended session's id.")
        target.add_argument("--new-session-for", metavar="USER", help="A username; a new session is made.")
        parser.add_argument("--force", action="store_true", help="Replace the session's files.")
        parser.add_argument("--dry-run", action="store_true", help="Say what would be done; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        archive: Path = options["archive"]
        if not archive.is_file():
            raise CommandError(f"No such file: {archive}")
        dry_run: bool = options["dry_run"]
        try:
            with archive.open("rb") as handle:
                if options["into"]:
                    session = Session.objects.filter(public_id=options["into"]).first()
                    if session is None:
                        raise CommandError(f"No session {options['into']}.")
                    done = workspace_restore(
                        session=session, archive=handle, force=options["force"], dry_run=dry_run
                    )
                else:
                    user = get_user_model().objects.filter(username=options["new_session_for"]).first()
                    if user is None:
                        raise CommandError(f"No user {options['new_session_for']}.")
                    _, done = workspace_restore_new_session(
                        user=user, archive=handle, name=f"Restored from {archive.name}", dry_run=dry_run
                    )
        except DomainError as exc:
            raise CommandError(exc.detail) from exc
        if dry_run:
            self.stdout.write(f"dry run: would {done}; nothing was changed")
        else:
            self.stdout.write(f"restored {archive}: {done}")
