from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts_app.services import user_ensure_first_admin


class Command(BaseCommand):
    help = "Create a first staff user with a random password when there is none, and print it once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, **options: Any) -> None:
        created = user_ensure_first_admin(username=options["username"])
        if created is None:
            self.stdout.write("A staff user already exists; sign in with it.")
            return
        user, password = created
        self.stdout.write(
            self.style.SUCCESS(
                f"Created staff user '{user.username}' with password '{password}'. "
                "It is shown only this once: note it now, or reset it with "
                f"`python manage.py changepassword {user.username}`."
            )
        )
