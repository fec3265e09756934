"""The cache in Redis holds JSON and never unpickles what it reads (issue 13)."""

from __future__ import annotations

import pickle

import pytest
import redis
from django.conf import settings
from django.core.cache import cache


@pytest.fixture
def raw() -> redis.Redis:
    assert settings.REDIS_URL, "these tests need the Redis that `make test` starts"
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


def test_values_are_stored_as_json(raw):
    cache.set("ticket-like", {"user_id": 7, "session": "abc", "ok": True}, 30)
    assert raw.get(cache.make_key("ticket-like")) == b'{"user_id":7,"session":"abc","ok":true}'
    assert cache.get("ticket-like") == {"user_id": 7, "session": "abc", "ok": True}


def test_counters_stay_integers_that_redis_increments(raw):
    cache.set("counter", 1, 30)
    assert cache.incr("counter") == 2
    assert raw.get(cache.make_key("counter")) == b"2"
    cache.set("flag", True, 30)
    assert cache.get("flag") is True


class _Marker:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        # Unpickling this would create the file: proof that code ran.
        return (open, (self.path, "w"))


def test_a_pickle_planted_in_redis_is_never_unpickled(raw, tmp_path):
    marker = tmp_path / "unpickled"
    raw.set(cache.make_key("planted"), pickle.dumps(_Marker(str(marker))))
    assert cache.get("planted") is None
    assert not marker.exists()
