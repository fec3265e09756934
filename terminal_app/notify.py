"""Telling a session's open terminals, on every daphne process, that the session stopped.

Each terminal consumer joins the channel-layer group of its session; with channels-redis the
group spans processes, so a suspend served by one replica closes terminals held by another.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def terminal_group(session_public_id: str) -> str:
    return f"terminals.{session_public_id}"


def terminals_notify_stopped(*, session_public_id: str, status: str) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(
            terminal_group(session_public_id), {"type": "session.stopped", "status": status}
        )
    except Exception:  # a channel layer outage must not block a suspend or a delete
        logger.warning("could not notify the terminals of session %s", session_public_id, exc_info=True)


def on_session_stopping(sender: object, *, session_public_id: str, status: str, **kwargs: object) -> None:
    """Receiver of ``sessions_app.signals.session_stopping`` (connected in ``TerminalConfig.ready``)."""
    terminals_notify_stopped(session_public_id=session_public_id, status=status)
