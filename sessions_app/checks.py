"""System checks of the sessions app: the workspace disk quota (issue 13)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register

from sessions_app.runtime import btrfs


@register("vibecode")
def check_workspace_disk_quota(app_configs: Any, **kwargs: Any) -> list[CheckMessage]:
    root = settings.VIBECODE_WORKSPACES_DIR
    if not root:
        return [
            Warning(
                "Workspaces have no disk quota: one user can fill the host's disk.",
                hint="Set VIBECODE_WORKSPACES_DIR to a btrfs filesystem with quotas enabled "
                "(docs/deploy.md, 'Workspace disk quotas'); `scripts/setup.sh` mounts a loop image "
                "at var/workspaces when it can.",
                id="vibecode.W013",
            )
        ]
    return [
        Error(
            f"VIBECODE_WORKSPACES_DIR cannot hold quota-limited workspaces: {problem}.",
            hint="Mount a btrfs filesystem there and run `btrfs quota enable` on it.",
            id="vibecode.E013",
        )
        for problem in btrfs.problems(root)
    ]
