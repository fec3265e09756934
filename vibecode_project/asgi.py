"""ASGI entry point for daphne: HTTP through Django, WebSockets through Channels."""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vibecode_project.settings")
# Django must be set up before anything imports models, hence the order below.
django.setup(set_prefix=False)

from core_app.handlers import SyncChainASGIHandler  # noqa: E402

# Django's ASGI handler with a synchronous middleware chain: one thread hop per request
# (core_app/handlers.py says why).
django_asgi_app = SyncChainASGIHandler()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from lsp_app.routing import websocket_urlpatterns as lsp_urlpatterns  # noqa: E402
from preview_app.proxy import PreviewRouter  # noqa: E402
from terminal_app.routing import websocket_urlpatterns as terminal_urlpatterns  # noqa: E402
from terminal_app.security import AuditedOriginValidator  # noqa: E402

# Preview hosts (<port>-<session>.<VIBECODE_PREVIEW_DOMAIN>) go to the sandbox before anything of
# the app sees them: no VibeCode URL, view, middleware or cookie exists on a preview origin.
application = PreviewRouter(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # A WebSocket from a page of another origin (or with no Origin at all) is refused at the
            # handshake: this server's own hosts and the configured CORS origins are the allowed ones.
            "websocket": AuditedOriginValidator(
                AuthMiddlewareStack(URLRouter([*terminal_urlpatterns, *lsp_urlpatterns])),
                [*settings.ALLOWED_HOSTS, *settings.CORS_ALLOWED_ORIGINS],
            ),
        }
    )
)

# Reconcile and idle cleanup in the server itself (VIBECODE_CLEANUP_INTERVAL; 0 turns it off).
from core_app.scheduler import start_scheduler  # noqa: E402

start_scheduler()
