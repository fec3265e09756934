"""Errors a runtime raises. They are domain errors, so the API turns them into JSON."""

from __future__ import annotations

from core_app.errors import ServiceUnavailable


class RuntimeUnavailable(ServiceUnavailable):
    code = "runtime_unavailable"
    default_detail = "The container engine is not reachable. Ask an operator to check Docker."
