"""Streaming responses under ASGI.

Daphne runs Django as ASGI. There, a ``StreamingHttpResponse`` whose body is a plain (sync)
iterator is read whole into memory before the first byte is sent; only an async iterator streams.
:func:`async_chunks` turns a blocking iterator into one, pulling each item in a worker thread.
:func:`streaming_body` picks the right form for the request: the test client speaks WSGI and
takes the plain iterator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import connections
from django.http import HttpRequest

T = TypeVar("T")


async def async_chunks(chunks: Iterator[T], *, thread_sensitive: bool = False) -> AsyncIterator[T]:
    """Feed a blocking iterator to an ASGI response one chunk at a time (a sync iterator would
    be read whole into memory first).

    ``thread_sensitive=True`` pulls every chunk on the request's own thread, where Django manages
    the database connection: use it when the iterator writes to the database. When the response
    stops early (the client went away), the iterator is closed, so a generator's ``finally`` runs.

    Otherwise the request's database connections are closed before the first chunk: the view is
    done with them, and a stream (a run's output, a download) may stay open for hours. Django
    would close them only at its end, so each open stream held a PostgreSQL backend.
    """
    if not thread_sensitive:
        await sync_to_async(connections.close_all, thread_sensitive=True)()
    sentinel = object()
    next_chunk = sync_to_async(lambda: next(chunks, sentinel), thread_sensitive=thread_sensitive)
    try:
        while (chunk := await next_chunk()) is not sentinel:
            yield chunk  # type: ignore[misc]
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            try:
                await sync_to_async(close, thread_sensitive=thread_sensitive)()
            except ValueError:  # "generator already executing" in another worker thread
                pass


def streaming_body(request: HttpRequest | Any, chunks: Iterator[T], *, thread_sensitive: bool = False) -> Any:
    """The body for a ``StreamingHttpResponse``: async under ASGI, the plain iterator under WSGI."""
    if request.META.get("wsgi.version") is None:
        return async_chunks(chunks, thread_sensitive=thread_sensitive)
    return chunks
