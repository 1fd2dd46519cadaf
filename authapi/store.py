"""The shared key-value store: revocation marks and lockout counters.

Redis in every real deployment; an in-process stand-in for development without
``REDIS_URL``. The in-process store is only correct while one process serves,
which is how ``make run`` starts gunicorn without Redis.
"""

import threading
import time

import redis
from flask import current_app
from redis.backoff import NoBackoff
from redis.retry import Retry


class RedisStore:
    def __init__(self, url: str):
        # Short timeouts: a token check that cannot reach Redis must fail closed
        # quickly (503), not hold a worker for the OS's TCP timeout. One
        # immediate retry replaces a pooled connection that a restarted Redis
        # dropped; redis-py's default (3 retries with backoff) held every
        # request 4 s before its 503 while Redis was down.
        self.client = redis.Redis.from_url(
            url,
            socket_timeout=1.0,
            socket_connect_timeout=1.0,
            health_check_interval=30,
            retry=Retry(NoBackoff(), 1),
            decode_responses=True,
        )

    def get_many(self, keys: list[str]) -> list[str | None]:
        return self.client.mget(keys)

    def set_many(self, entries: list[tuple[str, str, int]]) -> None:
        """Set (key, value, ttl seconds) entries in one round trip."""
        pipe = self.client.pipeline(transaction=False)
        for key, value, ttl in entries:
            pipe.set(key, value, ex=max(int(ttl), 1))
        pipe.execute()

    def incr(self, key: str, ttl: int) -> int:
        """Add one to a counter and (re)start its life of ``ttl`` seconds, in
        one atomic round trip. Returns the new count."""
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, max(int(ttl), 1))
        count, _ = pipe.execute()
        return int(count)

    def reserve(self, key: str, value: str, ttl: int) -> str | None:
        """Set ``key`` for ``ttl`` seconds unless it is set, in one atomic
        round trip. Returns None when this call set it, else the value held."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(key, value, nx=True, ex=max(int(ttl), 1))
        pipe.get(key)
        claimed, held = pipe.execute()
        return None if claimed else held

    def delete(self, *keys: str) -> None:
        if keys:
            self.client.delete(*keys)

    def ping(self) -> bool:
        return bool(self.client.ping())


class MemoryStore:
    def __init__(self):
        self._data: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get_many(self, keys: list[str]) -> list[str | None]:
        now = time.monotonic()
        with self._lock:
            values = []
            for key in keys:
                value, expires = self._data.get(key, (None, 0.0))
                values.append(value if expires > now else None)
            return values

    def set_many(self, entries: list[tuple[str, str, int]]) -> None:
        now = time.monotonic()
        with self._lock:
            # Drop expired entries now and then so a long-running dev server stays small.
            if len(self._data) > 10000:
                self._data = {k: v for k, v in self._data.items() if v[1] > now}
            for key, value, ttl in entries:
                self._data[key] = (value, now + max(int(ttl), 1))

    def incr(self, key: str, ttl: int) -> int:
        now = time.monotonic()
        with self._lock:
            value, expires = self._data.get(key, ("0", 0.0))
            count = (int(value) if expires > now else 0) + 1
            self._data[key] = (str(count), now + max(int(ttl), 1))
            return count

    def reserve(self, key: str, value: str, ttl: int) -> str | None:
        now = time.monotonic()
        with self._lock:
            held, expires = self._data.get(key, (None, 0.0))
            if held is not None and expires > now:
                return held
            self._data[key] = (value, now + max(int(ttl), 1))
            return None

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def ping(self) -> bool:
        return True


class SharedStore:
    """Flask extension holding the store of the app it is bound to: what every
    worker must see alike (revocation marks, lockout counters)."""

    def __init__(self, app=None):
        if app is not None:
            self.init_app(app)

    def init_app(self, app):
        url = app.config.get("REDIS_URL")
        if url:
            backend = RedisStore(url)
        else:
            app.logger.warning(
                "REDIS_URL is not set: using an in-process token store; "
                "run a single worker process or revocations are not shared"
            )
            backend = MemoryStore()
        app.extensions["authapi_store"] = backend

    @property
    def backend(self):
        return current_app.extensions["authapi_store"]

    def get_many(self, keys):
        return self.backend.get_many(keys)

    def set_many(self, entries):
        return self.backend.set_many(entries)

    def incr(self, key, ttl):
        return self.backend.incr(key, ttl)

    def reserve(self, key, value, ttl):
        return self.backend.reserve(key, value, ttl)

    def delete(self, *keys):
        return self.backend.delete(*keys)

    def ping(self):
        return self.backend.ping()
