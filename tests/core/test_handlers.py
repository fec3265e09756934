"""core_app.handlers.SyncChainASGIHandler: Django's ASGI handler with a synchronous middleware
chain, driven here over the ASGI interface as daphne drives it."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.testing import ApplicationCommunicator
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.test import override_settings
from django.urls import path

from core_app.handlers import SyncChainASGIHandler

BARRIER = threading.Barrier(2, timeout=10)
SEEN: dict[str, set[int]] = {"threads": set()}


def meet(request):
    # Returns only when two requests are inside views at once: proof they run in parallel.
    SEEN["threads"].add(threading.get_ident())
    BARRIER.wait()
    return JsonResponse({"ok": True})


def stream(request):
    return StreamingHttpResponse(iter([b"one ", b"two"]))


def boom(request):
    raise RuntimeError("a view that fails")


def plain(request):
    return HttpResponse(b"hello")


urlpatterns = [path("meet", meet), path("stream", stream), path("boom", boom), path("plain", plain)]

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.urls(__name__)]


def scope(url: str) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": url,
        "raw_path": url.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000),
        "server": ("testserver", 80),
    }


async def call(app: SyncChainASGIHandler, url: str) -> tuple[int, bytes]:
    communicator = ApplicationCommunicator(app, scope(url))
    await communicator.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await communicator.receive_output(timeout=15)
    body = b""
    while True:
        message = await communicator.receive_output(timeout=15)
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await communicator.wait(timeout=5)
    return start["status"], body


@override_settings(ROOT_URLCONF=__name__)
def test_the_chain_is_synchronous():
    app = SyncChainASGIHandler()
    assert not asyncio.iscoroutinefunction(app._middleware_chain)


@override_settings(ROOT_URLCONF=__name__)
def test_requests_run_in_parallel_each_on_its_own_thread():
    app = SyncChainASGIHandler()
    SEEN["threads"].clear()

    async def both():
        return await asyncio.gather(call(app, "/meet"), call(app, "/meet"))

    results = asyncio.run(both())
    assert [status for status, _ in results] == [200, 200]
    assert len(SEEN["threads"]) == 2


@override_settings(ROOT_URLCONF=__name__)
def test_responses_streams_and_errors_come_through_as_before():
    app = SyncChainASGIHandler()
    assert asyncio.run(call(app, "/plain")) == (200, b"hello")
    assert asyncio.run(call(app, "/stream")) == (200, b"one two")
    status, _ = asyncio.run(call(app, "/boom"))
    assert status == 500
    assert asyncio.run(call(app, "/nowhere"))[0] == 404
