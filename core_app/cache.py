"""The cache's serializer: JSON, never pickle.

Django's Redis cache pickles values by default, so anyone who can write to Redis could make
every backend run code of their choosing on its next cache read. Values here are JSON, and
whatever is not JSON is treated as missing: nothing read from Redis is ever unpickled.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


class JSONSerializer:
    """The ``serializer`` of Django's ``RedisCache`` (CACHES OPTIONS in settings.py).

    Integers stay raw, as with Django's own serializer, so that ``incr`` (the rate-limit
    counters) is atomic in Redis. Values must be JSON-serialisable: a tuple comes back a list.
    """

    def dumps(self, obj: Any) -> bytes | int:
        if type(obj) is int:  # not bool: True must come back True, not 1
            return obj
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        try:
            return int(data)
        except ValueError:
            pass
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            logger.warning("a cache value that is not JSON was ignored (never unpickled)")
            return None
