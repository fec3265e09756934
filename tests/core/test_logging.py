"""Log lines carry the request, user and session ids; the JSON format is one object per line."""

from __future__ import annotations

import json
import logging

import pytest

from core_app.logging import ContextFilter, JsonFormatter

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
