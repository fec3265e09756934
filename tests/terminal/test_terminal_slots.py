"""The open-terminal accounting of ``terminal_app.limits``, on the configured Redis and on the
local-memory cache of the embedded defaults. The clock is the only thing the tests move."""

from __future__ import annotations

import ast
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import caches

from sessions_app.signals import session_stopping
from terminal_app import limits, notify

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "slots"}}


@pytest.fixture(params=["redis", "locmem"])
def backend(request, settings) -> Iterator[str]:
    if request.param == "redis":
        if "redis" not in settings.CACHES["default"]["BACKEND"].lower():
            pytest.fail("the Redis accounting needs REDIS_URL: run the tests through scripts/test.sh")
    else:
        settings.CACHES = LOCMEM
    caches["default"].clear()
    yield request.param
    caches["default"].clear()


@pytest.fixture
def clock(monkeypatch) -> types.SimpleNamespace:
    """``limits``' view of the time, moved by the test."""
    now = types.SimpleNamespace(value=1_000_000.0)
    monkeypatch.setattr(limits, "time", types.SimpleNamespace(time=lambda: now.value))
    return now


def test_a_user_gets_as_many_slots_as_allowed_and_one_back_when_released(backend, clock, settings):
    settings.VIBECODE_MAX_TERMINALS_PER_USER = 3
    assert [limits.slot_acquire(user_id=1, slot_id=f"s{n}") for n in range(4)] == [True, True, True, False]
    # Another user has slots of their own; asking again for a held slot is not a new one.
    assert limits.slot_acquire(user_id=2, slot_id="s0")
    assert limits.slot_acquire(user_id=1, slot_id="s1")
    assert limits.slots_in_use(user_id=1) == 3
    limits.slot_release(user_id=1, slot_id="s1")
    limits.slot_release(user_id=1, slot_id="s1")  # twice: a no-op
    assert limits.slots_in_use(user_id=1) == 2
    assert limits.slot_acquire(user_id=1, slot_id="s3")
    assert not limits.slot_acquire(user_id=1, slot_id="s4")


def test_the_slots_of_a_replica_that_died_expire_and_a_heartbeat_keeps_live_ones(backend, clock, settings):
    settings.VIBECODE_MAX_TERMINALS_PER_USER = 2
    assert limits.slot_acquire(user_id=1, slot_id="dead")  # its replica never releases nor renews it
    assert limits.slot_acquire(user_id=1, slot_id="live")
    for _ in range(4):  # 4 heartbeats: longer than a slot lives without one
        clock.value += limits.SLOT_HEARTBEAT_SECONDS
        limits.slot_refresh(user_id=1, slot_id="live")
    assert limits.SLOT_HEARTBEAT_SECONDS * 4 > limits.SLOT_TTL_SECONDS
    assert limits.slots_in_use(user_id=1) == 1
    assert limits.slot_acquire(user_id=1, slot_id="new")
    assert not limits.slot_acquire(user_id=1, slot_id="one-too-many")


# --- one door: who imports whom ---------------------------------------------------------------


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, inside a function) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend((alias.name, in_function) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                found.append((child.module or "", in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def test_sessions_app_imports_no_terminal_code():
    files = sorted((REPO_ROOT / "sessions_app").rglob("*.py"))
    assert len(files) > 10
    imports = [(path.name, module) for path in files for module, _inside in _imports(path)]
    offending = [(name, module) for name, module in imports if module.startswith("terminal_app")]
    assert offending == []


def test_terminal_app_imports_nothing_inside_a_function():
    files = sorted((REPO_ROOT / "terminal_app").rglob("*.py"))
    assert len(files) > 8
    assert [(path.name, module) for path in files for module, inside in _imports(path) if inside] == []


def test_terminal_app_listens_to_session_stopping():
    assert notify.on_session_stopping in [entry[1]() for entry in session_stopping.receivers]
    assert "terminal_app" in settings.INSTALLED_APPS
