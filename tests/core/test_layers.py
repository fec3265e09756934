"""The house's layers, checked on the source: core_app is the ground floor, Docker is reached
through the runtime only, and only services (and the health check) ask for the runtime."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO_ROOT

APPS = sorted(path.parent.name for path in REPO_ROOT.glob("*_app/apps.py"))


def python_files(*roots: str) -> Iterator[Path]:
    for root in roots:
        yield from (path for path in (REPO_ROOT / root).rglob("*.py") if "migrations" not in path.parts)


def imported_modules(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


def test_core_app_imports_no_other_app():
    """Apps register into core_app (health checks, collectors, maintenance); it never reaches up."""
    assert {"core_app", "sessions_app", "workspace_app", "terminal_app"} <= set(APPS)
    offenders = [
        f"{relative(path)}: {module}"
        for path in python_files("core_app")
        for module in imported_modules(path)
        if module.split(".")[0] in set(APPS) - {"core_app"}
    ]
    assert offenders == []


def test_only_the_docker_backend_imports_docker():
    offenders = [
        relative(path)
        for path in python_files(*APPS, "sandbox", "vibecode_project")
        if any(module.split(".")[0] == "docker" for module in imported_modules(path))
    ]
    assert offenders == ["sessions_app/runtime/docker.py"]


def test_only_services_and_the_health_check_call_get_runtime():
    callers = sorted(
        relative(path)
        for path in python_files(*APPS, "sandbox", "vibecode_project")
        if "get_runtime()" in path.read_text() and path.parent.name != "runtime"
    )
    # warm_pool.py is the warm pool's services (take, bind, refill), kept apart from services.py;
    # engines.py the engines' (placement, state changes).
    allowed = {"services.py", "operations.py", "backups.py", "monitoring.py", "warm_pool.py", "engines.py"}
    assert callers, "get_runtime() is called somewhere"
    assert [caller for caller in callers if Path(caller).name not in allowed] == []


def test_the_program_inside_the_sandbox_lives_outside_the_apps():
    assert (REPO_ROOT / "sandbox" / "agent.py").is_file()
    assert not [
        relative(path) for path in python_files(*APPS) if path.name in {"agent.py", "sandbox_agent.py"}
    ]


def test_no_import_in_a_function_outside_app_ready():
    """Imports inside functions hide cycles; the one place for them is ``AppConfig.ready()``."""
    offenders = []
    for path in python_files(*APPS, "sandbox"):
        if path.name == "agent.py" and path.parent.name == "sandbox":
            continue  # the in-sandbox program, sent as source: it imports only the stdlib
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name != "ready":
                for inner in ast.walk(node):
                    if isinstance(inner, (ast.Import, ast.ImportFrom)):
                        offenders.append(f"{relative(path)}:{inner.lineno} in {node.name}()")
    assert offenders == []
