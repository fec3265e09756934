"""The ASGI handler for HTTP: Django's, with its middleware chain built synchronously.

Every middleware and view of VibeCode is synchronous. Django's ``ASGIHandler`` builds an *async*
chain all the same, so a request went loop → thread (the sync middleware) → loop (the async core
of the chain) → thread (the view): two extra hops, each a future, a context copy and a thread
wake-up, for nothing. This handler builds the chain as WSGI would and runs all of it in one hop to
the request's own thread.

Requests still run in parallel: Django's ``ASGIHandler.__call__`` enters a
``ThreadSensitiveContext`` per request, so each request's ``sync_to_async(thread_sensitive=True)``
gets a thread of its own (asgiref's per-context executors), as before.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.http import HttpRequest, HttpResponseBase


class SyncChainASGIHandler(ASGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # The chain is synchronous whatever the caller asks: get_response_async runs it in a thread.
        super().load_middleware(is_async=False)

    async def get_response_async(self, request: HttpRequest) -> HttpResponseBase:
        return await sync_to_async(self.get_response, thread_sensitive=True)(request)
