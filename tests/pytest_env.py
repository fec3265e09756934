"""Environment defaults of the test suite, loaded as a pytest plugin (``-p tests.pytest_env`` in
pyproject.toml) so that they are in place before pytest-django imports the settings."""

from __future__ import annotations

import os

# Every sandbox the suite makes carries vibecode.instance=test-<pid>, so that cleanup by label never
# touches a real installation's sandboxes on the same engine.
os.environ.setdefault("VIBECODE_INSTANCE", f"test-{os.getpid()}")
# No maintenance thread in the servers tests start: it would reconcile sessions whose rows live in
# a test's uncommitted transaction. The tests that need it turn it on for their own server.
os.environ.setdefault("VIBECODE_CLEANUP_INTERVAL", "0")
# Playwright's sync API keeps an event loop running in the main thread once a browser test has
# started; Django would then refuse the ORM calls of every later test in this process.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
# No warm pool: it would make sandboxes in the background of every test. The pool's own tests
# (tests/sessions/test_warm_pool.py) turn it on for themselves.
os.environ.setdefault("VIBECODE_WARM_POOL", "0")
