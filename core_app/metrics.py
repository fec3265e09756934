"""Prometheus metrics, defined once here and incremented where things happen.

Counters and histograms are per backend replica (scrape each one). A replica that runs several
worker processes (``vibecode_project/serve.py``) sums them through ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode): gauges of open things add up over the live workers.
Apps add collectors that read at scrape time with :func:`register_collector` in their
``ready()`` (sessions_app: sessions by status, counted in the database, so every replica reports
the same numbers for them).
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

_SCRAPE_TIME_COLLECTORS: list[Collector] = []

RATE_LIMIT_REFUSALS = Counter(
    "vibecode_rate_limit_refusals_total", "Requests refused by a rate limit.", ["group"]
)
AGENT_RESTARTS = Counter("vibecode_helper_restarts_total", "Times a session's helper process was restarted.")
OPEN_TERMINALS = Gauge(
    "vibecode_open_terminals", "Terminal WebSockets open in this process.", multiprocess_mode="livesum"
)
SESSION_CREATE_SECONDS = Histogram(
    "vibecode_session_create_seconds",
    "Time from a create request to a running session ready for exec.",
    buckets=(0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 30),
)
EXECS = Counter("vibecode_execs_total", "Commands run through exec and run.", ["outcome"])
EXEC_SECONDS = Histogram(
    "vibecode_exec_seconds",
    "Duration of exec and run requests, seen from the backend.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
DOCKER_ERRORS = Counter("vibecode_docker_errors_total", "Docker API calls that failed.", ["kind"])
# Package egress (issue 14): connections through the proxy by outcome (ok, refused_host...),
# bytes by direction (up: sandbox to upstream), and how many are open in this process.
EGRESS_CONNECTIONS = Counter(
    "vibecode_egress_connections_total", "Connections through the egress proxy, by outcome.", ["outcome"]
)
EGRESS_BYTES = Counter("vibecode_egress_bytes_total", "Bytes through the egress proxy.", ["direction"])
EGRESS_OPEN = Gauge(
    "vibecode_egress_open_connections",
    "Egress proxy connections open in this process.",
    multiprocess_mode="livesum",
)


def register_collector(collector: Collector) -> None:
    """Register a collector with the process's registry; a second registration (tests reload
    apps) is ignored."""
    if any(type(known) is type(collector) for known in _SCRAPE_TIME_COLLECTORS):
        return  # registered already
    _SCRAPE_TIME_COLLECTORS.append(collector)
    REGISTRY.register(collector)


def exposition() -> bytes:
    """The text a scrape of this replica gets: this process's metrics, or every worker's summed
    when the replica runs several (``PROMETHEUS_MULTIPROC_DIR``), plus the scrape-time collectors."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    for collector in _SCRAPE_TIME_COLLECTORS:
        registry.register(collector)
    return generate_latest(registry)


PREVIEW_REQUESTS = Counter(
    "vibecode_preview_requests_total",
    "Requests and WebSockets for preview origins, by outcome (ok, refused_403, not_listening...).",
    ["kind", "outcome"],
)
OPEN_LANGUAGE_SERVERS = Gauge(
    "vibecode_open_language_servers",
    "Language server WebSockets open in this process.",
    ["language"],
    multiprocess_mode="livesum",
)
LANGUAGE_SERVER_ENDS = Counter(
    "vibecode_language_server_ends_total",
    "Language server bridges that ended from the sandbox's side, by why (exited, replaced, broken...).",
    ["language", "reason"],
)
