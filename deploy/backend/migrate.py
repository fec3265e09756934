"""Migrate the database when a backend container starts, one replica at a time.

``docker compose up --scale backend=2`` starts both replicas at once. Django's ``migrate`` is
not safe to run twice concurrently (both would try to create the same tables), so every
replica first takes one PostgreSQL advisory lock, on a connection of its own, and holds it
while it runs ``manage.py migrate`` and then ``manage.py reconcile_sessions``. The second
replica waits, then finds nothing left to migrate. If a replica dies holding the lock, its
connection closes and PostgreSQL releases the lock.

With SQLite (no ``DATABASE_URL``) there is one process by definition: it just migrates.

Never prints ``DATABASE_URL``: it holds the password.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

# pg_advisory_lock takes a bigint; this is b"VIBECODE" read as one.
LOCK_ID = int.from_bytes(b"VIBECODE", "big")
APP_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def say(text: str) -> None:
    print(f"migrate: {text}", file=sys.stderr, flush=True)


def env_flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in {"1", "true", "yes", "on"}:
        return True
    if raw in {"0", "false", "no", "off"}:
        return False
    sys.exit(f"migrate: {name}={raw!r} is not a boolean; use true or false.")


def manage(*args: str, required: bool) -> None:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=APP_DIR, check=False)
    if result.returncode != 0:
        if required:
            sys.exit(f"migrate: manage.py {' '.join(args)} failed with exit code {result.returncode}")
        say(f"WARNING: manage.py {' '.join(args)} failed (exit code {result.returncode}); starting anyway")


def run_steps() -> None:
    manage("migrate", "--noinput", required=True)
    if env_flag("VIBECODE_RECONCILE_ON_START", True):
        # Without the engine there is nothing to reconcile with; the server still starts.
        manage("reconcile_sessions", required=False)
        # The first members of the warm pool, before the first user asks (VIBECODE_WARM_POOL).
        manage("refill_warm_pool", required=False)


def connect(url: str, wait_seconds: float):  # type: ignore[no-untyped-def]
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(url)
    where = f"{params.get('host', 'localhost')}:{params.get('port', 5432)}"
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            return psycopg.connect(url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            if time.monotonic() > deadline:
                first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                sys.exit(
                    f"migrate: PostgreSQL at {where} did not answer in {wait_seconds:.0f} s: {first_line}"
                )
            say(f"waiting for PostgreSQL at {where}")
            time.sleep(2)


def main() -> None:
    if not env_flag("VIBECODE_MIGRATE_ON_START", True):
        say("VIBECODE_MIGRATE_ON_START is false; not migrating")
        return
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(("postgres://", "postgresql://")):
        run_steps()
        return
    wait_seconds = float(os.environ.get("VIBECODE_DB_WAIT_SECONDS") or 90)
    with connect(url, wait_seconds) as conn:
        started = time.monotonic()
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
        waited = time.monotonic() - started
        if waited > 1:
            say(f"took the migration lock after waiting {waited:.1f} s for another replica")
        try:
            run_steps()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))


if __name__ == "__main__":
    main()
