"""Rate limits: django-ratelimit counts, DRF's throttle hook refuses with 429 and Retry-After.

Each throttle names a django-ratelimit group, a rate setting and a key. Counting happens in the
configured cache (Redis when ``REDIS_URL`` is set), so limits hold across daphne processes.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.exceptions
from django.conf import settings
from django.http import HttpRequest
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


def login_username(value: object) -> str:
    """The username as the sign-in limits count it."""
    return str(value or "")[:150].lower()


def _count(request: HttpRequest, group: str, key: str, rate: str, *, increment: bool) -> dict | None:
    return get_usage(request, group=group, key=lambda _group, _request: key, rate=rate, increment=increment)


def login_refusal(request: HttpRequest, username: str) -> float | None:
    """Count one sign-in attempt; the seconds to wait when it is refused, ``None`` when allowed.

    Two limits, so that one address cannot lock a username out for everyone:

    - attempts per client address and username together (``VIBECODE_RATE_LOGIN``, 10/m);
    - failed sign-ins per username from every address (``VIBECODE_RATE_LOGIN_USERNAME``,
      100/h), counted by :func:`login_failure_record`: a slower cap against many addresses.

    The client's address is the trusted proxy's ``X-Forwarded-For`` behind nginx
    (``core_app.net.client_ip``). With the cache down both fail open, as every limit does.
    """
    username = login_username(username)
    try:
        per_address = _count(
            request, "login", f"{client_ip(request)}:{username}", settings.VIBECODE_RATE_LOGIN, increment=True
        )
        if per_address is not None and per_address["should_limit"]:
            RATE_LIMIT_REFUSALS.labels(group="login").inc()
            return max(1.0, float(per_address["time_left"]))
        per_username = _count(
            request, "login-username", username, settings.VIBECODE_RATE_LOGIN_USERNAME, increment=False
        )
    except (redis.exceptions.RedisError, OSError):
        logger.warning("sign-in limits not checked: the cache is unavailable")
        return None
    if per_username is not None and per_username["count"] >= per_username["limit"]:
        RATE_LIMIT_REFUSALS.labels(group="login-username").inc()
        return max(1.0, float(per_username["time_left"]))
    return None


def login_failure_record(request: HttpRequest, username: str) -> None:
    """Count a failed sign-in against the username's cap across addresses.

    One address counts for at most a fifth of that cap in a window, so locking a username out
    for everyone takes failures from five addresses or more.
    """
    username = login_username(username)
    rate = settings.VIBECODE_RATE_LOGIN_USERNAME
    try:
        mine = _count(
            request, "login-username-address", f"{client_ip(request)}:{username}", rate, increment=True
        )
        if mine is not None and mine["count"] <= max(1, mine["limit"] // 5):
            _count(request, "login-username", username, rate, increment=True)
    except (redis.exceptions.RedisError, OSError):
        logger.warning("failed sign-in not counted: the cache is unavailable")


class LoginRateThrottle(RatelimitThrottle):
    """Sign-in attempts through the API: the two limits of :func:`login_refusal`."""

    group = "login"
    rate_setting = "VIBECODE_RATE_LOGIN"

    def allow_request(self, request: Request, view: Any) -> bool:
        username = request.data.get("username", "") if isinstance(request.data, dict) else ""
        self._wait = login_refusal(request, username)
        return self._wait is None


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


class AgentTurnRateThrottle(RatelimitThrottle):
    """Agent turns started per user (``VIBECODE_RATE_AGENT_TURNS``, 10/minute)."""

    group = "agent-turn"
    rate_setting = "VIBECODE_RATE_AGENT_TURNS"
