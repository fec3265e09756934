"""Terminal limits that hold across daphne replicas: handshakes per user and per IP, and open
terminals per user. Both count in the configured cache (Redis when ``REDIS_URL`` is set).

Open terminals are slots in a Redis sorted set per user: the member is the terminal's client id,
the score the time it expires. An open terminal renews its slot every ``SLOT_HEARTBEAT_SECONDS``
(:func:`slot_refresh`); a closed one releases it (:func:`slot_release`). A replica that dies
without releasing leaks nothing for good: its slots expire ``SLOT_TTL_SECONDS`` after their last
heartbeat. Without Redis (the embedded defaults: one process, a local-memory cache) the same
accounting runs under a process lock.

While Redis is unavailable the limits are not checked (logged): terminals keep working.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis.exceptions
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.redis import RedisCache
from django.http import HttpRequest
from django_ratelimit.core import get_usage

from core_app.metrics import RATE_LIMIT_REFUSALS
from core_app.net import client_ip

logger = logging.getLogger(__name__)

SLOT_TTL_SECONDS = 90
SLOT_HEARTBEAT_SECONDS = 30
_SLOTS_PREFIX = "terminal-slots:"
_UNAVAILABLE = (redis.exceptions.RedisError, OSError)
_local_lock = threading.Lock()

# Drop expired slots, then take one if there is room (renewing it if already held). Atomic, so
# two replicas cannot both take the last slot.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[4]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


# --- handshakes -------------------------------------------------------------------------------


def scope_client_ip(scope: dict[str, Any]) -> str:
    """The client's IP for a WebSocket scope, by the same rules as for HTTP (``core_app.net``)."""
    request = HttpRequest()
    request.method = "GET"
    request.META["REMOTE_ADDR"] = (scope.get("client") or ["", 0])[0] or ""
    for name, value in scope.get("headers") or []:
        if name == b"x-forwarded-for":
            request.META["HTTP_X_FORWARDED_FOR"] = value.decode("latin1")
    return client_ip(request)


def _limited(group: str, key: str, rate: str) -> bool:
    request = HttpRequest()
    request.method = "GET"
    try:
        usage = get_usage(request, group=group, key=lambda _group, _request: key, rate=rate, increment=True)
    except _UNAVAILABLE:
        logger.warning("rate limit %s not checked: the cache is unavailable", group)
        return False
    if usage is None or not usage["should_limit"]:
        return False
    RATE_LIMIT_REFUSALS.labels(group=group).inc()
    return True


def handshake_ip_limited(*, scope: dict[str, Any]) -> bool:
    """Counts this handshake against its IP (``VIBECODE_RATE_TERMINAL_IP``); True past the rate.
    Blocking (cache): call through ``sync_to_async``."""
    return _limited("terminal-ip", f"ip:{scope_client_ip(scope)}", settings.VIBECODE_RATE_TERMINAL_IP)


def handshake_user_limited(*, user_id: int) -> bool:
    """Counts this handshake against its user (``VIBECODE_RATE_TERMINAL_USER``); True past it."""
    return _limited("terminal-user", f"user:{user_id}", settings.VIBECODE_RATE_TERMINAL_USER)


# --- open terminals ---------------------------------------------------------------------------


def _redis(key: str) -> Any | None:
    """The raw redis-py client behind the cache, or None when the cache is not Redis."""
    backend = caches["default"]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(key, write=True)  # type: ignore[attr-defined]
    return None


def _slots_key(user_id: int) -> str:
    return cache.make_key(f"{_SLOTS_PREFIX}{user_id}")


def slot_acquire(*, user_id: int, slot_id: str) -> bool:
    """Take one of the user's ``VIBECODE_MAX_TERMINALS_PER_USER`` slots; False when all are taken."""
    now = time.time()
    cap = settings.VIBECODE_MAX_TERMINALS_PER_USER
    key = _slots_key(user_id)
    try:
        client = _redis(key)
        if client is not None:
            expires = now + SLOT_TTL_SECONDS
            return bool(client.eval(_ACQUIRE, 1, key, now, expires, cap, slot_id, SLOT_TTL_SECONDS))
        with _local_lock:
            slots = {sid: exp for sid, exp in (cache.get(key) or {}).items() if exp > now}
            if slot_id not in slots and len(slots) >= cap:
                return False
            slots[slot_id] = now + SLOT_TTL_SECONDS
            cache.set(key, slots, SLOT_TTL_SECONDS)
            return True
    except _UNAVAILABLE:
        logger.warning("terminal limit not checked for user %s: the cache is unavailable", user_id)
        return True


def slot_refresh(*, user_id: int, slot_id: str) -> None:
    """Renew a slot (the heartbeat). A slot lost meanwhile is taken again, even past the cap:
    the terminal is open, and counting it is what matters."""
    now = time.time()
    key = _slots_key(user_id)
    try:
        client = _redis(key)
        if client is not None:
            client.zadd(key, {slot_id: now + SLOT_TTL_SECONDS})
            client.expire(key, SLOT_TTL_SECONDS)
            return
        with _local_lock:
            slots = {sid: exp for sid, exp in (cache.get(key) or {}).items() if exp > now}
            slots[slot_id] = now + SLOT_TTL_SECONDS
            cache.set(key, slots, SLOT_TTL_SECONDS)
    except _UNAVAILABLE:
        logger.warning("terminal slot of user %s not renewed: the cache is unavailable", user_id)


def slot_release(*, user_id: int, slot_id: str) -> None:
    """Give a slot back. Released or expired already: no-op."""
    key = _slots_key(user_id)
    try:
        client = _redis(key)
        if client is not None:
            client.zrem(key, slot_id)
            return
        with _local_lock:
            slots = dict(cache.get(key) or {})
            if slots.pop(slot_id, None) is not None:
                cache.set(key, slots, SLOT_TTL_SECONDS)
    except _UNAVAILABLE:
        logger.warning("terminal slot of user %s not released: the cache is unavailable", user_id)


def slots_in_use(*, user_id: int) -> int:
    """How many slots the user holds now (expired ones not counted)."""
    now = time.time()
    key = _slots_key(user_id)
    client = _redis(key)
    if client is not None:
        return int(client.zcount(key, f"({now}", "+inf"))
    return len([exp for exp in (cache.get(key) or {}).values() if exp > now])
