"""The saved workbench of a session: the IDE's open tabs, cursors, panel size and terminals.

Its shape is validated by ``sessions_app.api.serializers.WorkbenchStateInput``; here it is read
and written, capped in size. It is the page's layout only: it never reaches the sandbox.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings

from sessions_app.errors import WorkbenchTooLarge
from sessions_app.models import Session, WorkbenchState

EMPTY_STATE: dict[str, Any] = {
    "tabs": [],
    "active": None,
    "panel_height": None,
    "terminals": [],
    "active_terminal": None,
}


def workbench_get(*, session: Session) -> tuple[dict[str, Any], WorkbenchState | None]:
    """The session's saved state (every key present, defaults for a session never saved) and its
    row, or None."""
    row = WorkbenchState.objects.filter(session=session).first()
    return {**EMPTY_STATE, **(row.state if row else {})}, row


def workbench_save(*, session: Session, state: dict[str, Any]) -> WorkbenchState:
    """Replace the session's state with ``state`` (already validated). Raises WorkbenchTooLarge
    past ``VIBECODE_MAX_WORKBENCH_BYTES`` of JSON, and then keeps the previous state."""
    size = len(json.dumps(state, ensure_ascii=False, separators=(",", ":")).encode())
    limit = settings.VIBECODE_MAX_WORKBENCH_BYTES
    if size > limit:
        raise WorkbenchTooLarge(
            f"The workbench state is {size} bytes; the limit is {limit}. Close some tabs.",
            limit_bytes=limit,
        )
    row, _ = WorkbenchState.objects.update_or_create(session=session, defaults={"state": state})
    return row
