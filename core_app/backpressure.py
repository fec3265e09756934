"""Backpressure for streamed HTTP responses under daphne.

An ASGI application's ``send`` returns as soon as daphne has handed the bytes to Twisted, which
buffers whatever the client's TCP window does not take. A download read by a slow client would
then pile up in the server's memory as fast as the sandbox can produce it. :func:`install` wraps
``daphne.server.Server.handle_reply`` so that the ``send`` of a response body chunk returns only
once the connection's transport holds less than :data:`HIGH_WATER` bytes: the response's
iterator (and, behind it, the sandbox helper's bounded queue) then waits for the client.

It lives on the ground floor because it knows only daphne. Outside daphne (the test client,
another server) it does nothing.
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable
from typing import Any

HIGH_WATER = 1 << 20  # bytes held for one client before its response waits
POLL_SECONDS = 0.005


def buffered_bytes(protocol: Any) -> int:
    """Bytes written to ``protocol``'s transport and not yet taken by the kernel (Twisted's
    ``FileDescriptor`` keeps them in ``dataBuffer`` from ``offset``, plus ``_tempDataLen``),
    plus autobahn's own send queue for a WebSocket. 0 for a transport of another kind."""
    transport = getattr(protocol, "transport", None)
    total = 0
    if transport is not None:
        data = getattr(transport, "dataBuffer", b"")
        total += len(data) - int(getattr(transport, "offset", 0)) + int(getattr(transport, "_tempDataLen", 0))
    for chunk, _sync in getattr(protocol, "send_queue", ()) or ():
        total += len(chunk)
    return max(0, total)


def install() -> None:
    """Wrap daphne's ``handle_reply`` once, in a daphne process only: importing ``daphne.server``
    installs Twisted's reactor, so it is never imported here, only found."""
    server_module = sys.modules.get("daphne.server")
    if server_module is None:
        return
    server_class = server_module.Server
    original: Callable[..., Any] = server_class.handle_reply
    if getattr(original, "_vibecode", False):
        return

    @functools.wraps(original)
    async def handle_reply(self: Any, protocol: Any, message: dict[str, Any]) -> None:
        await original(self, protocol, message)
        if message.get("type") != "http.response.body" or not message.get("more_body"):
            return
        while buffered_bytes(protocol) > HIGH_WATER:
            state = self.connections.get(protocol)
            if state is None or state.get("disconnected"):
                return  # the client went away: the application learns it from its next send
            await asyncio.sleep(POLL_SECONDS)

    handle_reply._vibecode = True  # type: ignore[attr-defined]
    server_class.handle_reply = handle_reply
