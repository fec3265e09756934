"""Log lines carry the request, user and session ids; the JSON format is one object per line."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from core_app.logging import ContextFilter, JsonFormatter
from sessions_app.models import Session

pytestmark = pytest.mark.django_db


def test_access_lines_name_the_request_and_user_but_never_the_query_string(alice_api, alice, caplog):
    caplog.set_level(logging.INFO, logger="vibecode.access")
    response = alice_api.get("/api/me?token=secret-in-the-query")
    line = next(r for r in caplog.records if r.name == "vibecode.access")
    message = line.getMessage()
    assert "GET /api/me 200" in message and f"user={alice.pk}" in message
    assert response["X-Request-ID"] in message
    assert "secret-in-the-query" not in message and "token=" not in message


def test_the_json_format_carries_the_context():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello %s", ("world",), None)
    ContextFilter().filter(record)
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "hello world"
    assert set(entry) >= {"time", "level", "logger", "request_id", "user_id", "session_id"}


@pytest.fixture
def json_lines():
    """What the ``vibecode.access`` and ``tests`` loggers write in the JSON format, line by line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    loggers = [logging.getLogger("vibecode.access"), logging.getLogger("tests.logging")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    for lg, level in saved:
        lg.removeHandler(handler)
        lg.setLevel(level)


def test_json_access_lines_carry_the_request_id_user_and_session(alice_api, alice, json_lines):
    # A row only: reading a session's details never touches its container.
    session = Session.objects.create(
        owner=alice, name="logs", status=Session.Status.RUNNING, container_name="vibecode-logs-test"
    )
    response = alice_api.get(f"/api/vibecode/sessions/{session.public_id}")
    assert response.status_code == 200
    line = next(e for e in json_lines() if e["logger"] == "vibecode.access")
    assert line["request_id"] == response["X-Request-ID"] != "-"
    assert line["user_id"] == str(alice.pk)
    assert line["session_id"] == session.public_id
    assert line["status"] == 200 and line["method"] == "GET"
    assert line["path"] == f"/api/vibecode/sessions/{session.public_id}"


def test_an_anonymous_request_still_gets_its_own_request_id(client, json_lines):
    first = client.get("/api/me")
    second = client.get("/api/me")
    lines = [e for e in json_lines() if e["logger"] == "vibecode.access"]
    assert [e["request_id"] for e in lines] == [first["X-Request-ID"], second["X-Request-ID"]]
    assert first["X-Request-ID"] != second["X-Request-ID"]
    assert [e["user_id"] for e in lines] == ["-", "-"]


def test_extra_fields_survive_into_the_json(json_lines):
    ident = uuid.uuid4()
    logging.getLogger("tests.logging").info(
        "container %s started",
        "abc123",
        extra={"container": "abc123", "attempt": 2, "ok": True, "ident": ident, "sizes": [1, 2]},
    )
    (entry,) = json_lines()
    assert entry["message"] == "container abc123 started"
    assert entry["container"] == "abc123" and entry["attempt"] == 2 and entry["ok"] is True
    assert entry["ident"] == str(ident) and entry["sizes"] == [1, 2]


def test_extra_objects_that_could_carry_secrets_are_left_out(rf, json_lines):
    # django.request passes the request itself as extra; its repr carries the query string.
    request = rf.get("/api/me?token=secret-in-the-query")
    logging.getLogger("tests.logging").warning("failed", extra={"request": request, "status_code": 500})
    (entry,) = json_lines()
    assert entry["status_code"] == 500 and "request" not in entry
    assert "secret-in-the-query" not in json.dumps(entry)
