from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


class Command(BaseCommand):
    help = "Report unapplied migrations; exit non-zero if there are any (the seed's check_schema.py)."

    def handle(self, *args: Any, **options: Any) -> None:
        executor = MigrationExecutor(connection)
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
        if plan:
            for migration, _backwards in plan:
                self.stdout.write(f"unapplied: {migration.app_label}.{migration.name}")
            raise CommandError(f"{len(plan)} migration(s) not applied. Run: python manage.py migrate")
        self.stdout.write(self.style.SUCCESS("Schema is up to date: every migration is applied."))
