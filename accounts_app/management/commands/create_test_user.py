from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts_app.services import TEST_USER, user_ensure_test_user


class Command(BaseCommand):
    help = "Create the seed guide's development user testuser / testpass123 (safe to run twice)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--force", action="store_true", help="Allow it with DEBUG off.")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError(
                "Refusing to create a user with a published password while DEBUG is off. "
                "Use --force if you really mean it."
            )
        user, created = user_ensure_test_user()
        verb = "Created" if created else "Already present:"
        self.stdout.write(f"{verb} {user.username} / {TEST_USER['password']} / {user.email}")
