"""How many bytes the server still holds for a WebSocket client: daphne's Twisted transport buffer.

A consumer's ``send`` returns as soon as daphne has handed the frame to Twisted, which buffers
whatever the client's TCP window does not take. A client that stops reading (and still sends
acks) would make that buffer grow without end. Daphne does not show the transport to the
application, so :func:`install` wraps ``daphne.server.Server.create_application`` to put a
callable in the scope, ``scope["vibecode.write_buffer"]``, that answers the bytes buffered now.
The terminal's pump waits while it is above a high-water mark. The same hook makes autobahn close
a connection it fails (a message past daphne's size limit) with a close frame, not a bare drop.

Outside daphne (``WebsocketCommunicator``) the key is absent and the ack window alone applies.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

from core_app.backpressure import buffered_bytes

logger = logging.getLogger(__name__)

SCOPE_KEY = "vibecode.write_buffer"


def install() -> None:
    """Wrap daphne's ``create_application`` once, in a daphne process only: importing
    ``daphne.server`` installs Twisted's reactor, so it is never imported here, only found."""
    server_module, protocol_module = sys.modules.get("daphne.server"), sys.modules.get("daphne.ws_protocol")
    if server_module is None or protocol_module is None:
        return
    Server, WebSocketProtocol = server_module.Server, protocol_module.WebSocketProtocol
    original: Callable[..., Any] = Server.create_application
    if getattr(original, "_vibecode", False):
        return

    @functools.wraps(original)
    def create_application(self: Any, protocol: Any, scope: dict[str, Any]) -> Any:
        if isinstance(protocol, WebSocketProtocol):
            scope[SCOPE_KEY] = functools.partial(buffered_bytes, protocol)
            # A message past daphne's own size limit (1 MiB) fails the connection; by default
            # autobahn then drops TCP without a close frame. Send one (1009, message too big).
            protocol.failByDrop = False
        return original(self, protocol, scope)

    create_application._vibecode = True  # type: ignore[attr-defined]
    Server.create_application = create_application  # type: ignore[method-assign]
