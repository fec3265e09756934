"""Prometheus metrics, defined once here and incremented where things happen."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

RATE_LIMIT_REFUSALS = Counter(
    "vibecode_rate_limit_refusals_total", "Requests refused by a rate limit.", ["group"]
)

AGENT_RESTARTS = Counter("vibecode_helper_restarts_total", "Times a session's helper process was restarted.")

OPEN_TERMINALS = Gauge("vibecode_open_terminals", "Terminal WebSockets open in this process.")
