"""The compose stack under test, driven through the compose tool and reached only through nginx
on loopback.

Run by ``make test-deploy`` (scripts/test-deploy.sh), never by ``make test``: these tests live
outside ``tests/`` (pyproject's testpaths) and have an ini file of their own. The stack runs with
the offline images of ``make images``, as compose project ``DEPLOY_PROJECT`` with sandboxes
labelled ``vibecode.instance=DEPLOY_INSTANCE``; everything both name is removed afterwards, and
nothing else is touched.

Environment (scripts/test-deploy.sh sets them; the defaults suit a manual run):
    DEPLOY_COMPOSE     the compose command, e.g. "docker-compose" or "docker compose"
    DEPLOY_PROJECT     compose project name (vibecode-deploytest)
    DEPLOY_INSTANCE    the sandboxes' vibecode.instance label (deploytest)
    DEPLOY_PORT        loopback port nginx is published on (9000)
    DEPLOY_SUBNET      the stack's front network (172.30.91.0/24); nginx takes its .10
    DEPLOY_DATA_SUBNET the stack's data network (172.30.92.0/24)
    DEPLOY_ARTIFACTS   where container logs are saved (var/deploy-test)
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from compose_stack import REPO_ROOT, Stack, compose_env, remove_by_labels


def _env(name: str, default: str) -> str:
    return os.environ.get(name) or default


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    project = _env("DEPLOY_PROJECT", "vibecode-deploytest")
    instance = _env("DEPLOY_INSTANCE", "deploytest")
    port = int(_env("DEPLOY_PORT", "9000"))
    subnet = _env("DEPLOY_SUBNET", "172.30.91.0/24")
    data_subnet = _env("DEPLOY_DATA_SUBNET", "172.30.92.0/24")
    artifacts = Path(_env("DEPLOY_ARTIFACTS", str(REPO_ROOT / "var" / "deploy-test")))
    artifacts.mkdir(parents=True, exist_ok=True)
    for old in [*artifacts.glob("*.log"), *artifacts.glob("*.env")]:
        old.unlink()
    # Everything of this project and instance is removed, before and after: never a real one.
    if not (re.fullmatch(r"[a-z0-9][a-z0-9_-]*deploytest[a-z0-9_-]*", project) and "deploytest" in instance):
        pytest.fail(
            f"refusing to run as project {project!r} / instance {instance!r}: both must say deploytest"
        )

    stack = Stack(
        compose_cmd=shlex.split(_env("DEPLOY_COMPOSE", "docker-compose")),
        project=project,
        instance=instance,
        port=port,
        subnet=subnet,
        artifacts=artifacts,
        env=compose_env(
            project=project,
            instance=instance,
            port=port,
            subnet=subnet,
            data_subnet=data_subnet,
            env_file=artifacts / "generated.env",
        ),
    )
    # The stack's passwords must never reach a log either.
    stack.credentials.update([stack.env["REDIS_PASSWORD"], stack.env["POSTGRES_PASSWORD"]])
    remove_by_labels(project, instance)  # whatever an interrupted run left behind
    try:
        yield stack
    finally:
        stack.remove_everything()
