"""Rate limits: django-ratelimit counts, DRF's throttle hook refuses with 429 and Retry-After.

Each throttle names a django-ratelimit group, a rate setting and a key. Counting happens in the
configured cache (Redis when ``REDIS_URL`` is set), so limits hold across daphne processes.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from django.conf import settings
from django_ratelimit.core import get_usage
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from core_app.metrics import RATE_LIMIT_REFUSALS
from core_app.net import client_ip

logger = logging.getLogger(__name__)


def user_or_ip(request: Request) -> str:
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        return f"user:{user.pk}"
    return f"ip:{client_ip(request)}"


class RatelimitThrottle(BaseThrottle):
    group: str = "api"
    rate_setting: str = "VIBECODE_RATE_API"

    def __init__(self) -> None:
        self._wait: float | None = None

    def key(self, request: Request) -> str:
        return user_or_ip(request)

    def allow_request(self, request: Request, view: Any) -> bool:
        try:
            usage = get_usage(
                request,
                group=self.group,
                key=lambda _group, _request: self.key(request),
                rate=getattr(settings, self.rate_setting),
                increment=True,
            )
        except (redis.exceptions.RedisError, OSError):
            # The counters live in Redis; while it restarts, serve rather than fail every request.
            logger.warning("rate limit %s not checked: the cache is unavailable", self.group)
            return True
        if usage is None or not usage["should_limit"]:
            return True
        self._wait = float(usage["time_left"])
        RATE_LIMIT_REFUSALS.labels(group=self.group).inc()
        return False

    def wait(self) -> float | None:
        return self._wait


class ApiRateThrottle(RatelimitThrottle):
    """The general API limit (``VIBECODE_RATE_API``, 100/minute), per user or anonymous IP."""


class LoginRateThrottle(RatelimitThrottle):
    """Login attempts per client IP and username together (``VIBECODE_RATE_LOGIN``)."""

    group = "login"
    rate_setting = "VIBECODE_RATE_LOGIN"

    def key(self, request: Request) -> str:
        username = ""
        if isinstance(request.data, dict):
            username = str(request.data.get("username", ""))[:150].lower()
        return f"{client_ip(request)}:{username}"


class ExecRateThrottle(RatelimitThrottle):
    """Exec and run requests per user (``VIBECODE_RATE_EXEC``, 10/minute)."""

    group = "exec"
    rate_setting = "VIBECODE_RATE_EXEC"


class SaveRateThrottle(RatelimitThrottle):
    """File saves per user (``VIBECODE_RATE_SAVE``, 60/minute)."""

    group = "save"
    rate_setting = "VIBECODE_RATE_SAVE"


class AssistantRateThrottle(RatelimitThrottle):
    """Questions to the AI assistant per user (``VIBECODE_RATE_ASSISTANT``, 20/minute)."""

    group = "assistant"
    rate_setting = "VIBECODE_RATE_ASSISTANT"
