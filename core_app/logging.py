"""Log context and formats: every line can carry the request id, user id and session id.

The access-log middleware and the session views set the context; a filter adds it to every
record; ``VIBECODE_LOG_FORMAT=json`` writes one JSON object per line. Nothing here ever logs a
token, a ticket, a password or a query string.
"""

from __future__ import annotations

import contextvars
import json
import logging
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import PurePath

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
user_id: contextvars.ContextVar[str] = contextvars.ContextVar("user_id", default="-")
session_id: contextvars.ContextVar[str] = contextvars.ContextVar("session_id", default="-")


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        record.user_id = user_id.get()
        record.session_id = session_id.get()
        return True


# The attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
    "request_id",
    "user_id",
    "session_id",
}


_SKIP = object()
# Written as their str(); any other object (Django's ``request`` extra, whose repr carries the query
# string and so maybe a token) is left out rather than guessed at.
_STRINGIFIED = (uuid.UUID, PurePath, datetime, date, Decimal, Enum)


def _json_safe(value: object) -> object:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, _STRINGIFIED):
        return str(value)
    if isinstance(value, (list, tuple)):
        items = [_json_safe(item) for item in value]
        return [item for item in items if item is not _SKIP]
    if isinstance(value, dict):
        pairs = ((str(key), _json_safe(item)) for key, item in value.items())
        return {key: item for key, item in pairs if item is not _SKIP}
    return _SKIP


class JsonFormatter(logging.Formatter):
    """One JSON object per line: the standard fields, the context ids, and every ``extra=`` field
    of the call (values that are not JSON types are written as their ``str``)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "user_id": getattr(record, "user_id", "-"),
            "session_id": getattr(record, "session_id", "-"),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and key not in entry:
                safe = _json_safe(value)
                if safe is not _SKIP:
                    entry[key] = safe
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)
