"""The shared key-value store: revocation marks, lockout counters, reservations.

Redis in every real deployment; an in-process stand-in for development without
``REDIS_URL``. Besides plain gets, sets, counters and ``take`` (a value read
and deleted at once: a passkey challenge is spent by whoever presents it
first), ``write_marks`` is the one
atomic step revocation needs (marks, a cut-off that only rises, a user key
created only by a rebuild whose guard survived): authapi.revocation says why. The in-process store is only correct while one process serves,
which is how ``make run`` starts gunicorn without Redis.
"""

import threading
import time

import redis
from flask import current_app

from config import redis_url

from .redis_clients import connect, with_cluster_errors

# write_marks in one atomic step. KEYS: the user key, the guard key (the user
# key again when unguarded), then the marks; ARGV: cut-off, its ttl, create
# ("1"/"0"), guarded ("1"/"0"), then each mark's ttl. Every key shares the
# user's hash tag, so it runs on a Redis Cluster too.
WRITE_MARKS = """
if ARGV[4] == '1' then
  if redis.call('DEL', KEYS[2]) == 0 then return false end
end
for i = 3, #KEYS do
  redis.call('SET', KEYS[i], '1', 'EX', ARGV[i + 2])
end
local current = redis.call('GET', KEYS[1])
if current then
  local value = math.max(tonumber(current), tonumber(ARGV[1]))
  local ttl = math.max(redis.call('TTL', KEYS[1]), tonumber(ARGV[2]))
  current = string.format('%d', value)
  redis.call('SET', KEYS[1], current, 'EX', ttl)
  return current
end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return ARGV[1]
end
return ''
"""


# A counter's increment and its new life, one key, atomic (a script rather
# than MULTI: one slot whatever the topology, one round trip).
INCR = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
return count
"""

# Set KEYS[1] unless set; nil when this call set it, else the value held.
RESERVE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])
"""

# KEYS[1]'s value, deleted in the same step (GETDEL, which needs Redis 6.2).
TAKE = """
local value = redis.call('GET', KEYS[1])
if value then redis.call('DEL', KEYS[1]) end
return value
"""


class RedisStore:
    """The store on Redis, whichever form REDIS_URL takes (config.redis_url).

    On a Cluster every command and script here touches one hash slot: scripts
    and MGET take keys of one slot (a user's keys share the ``{u:ID}`` tag),
    the other keys go one by one through a pipeline, which redis-py splits
    by node. The client is made at first use: a Cluster client reads the slot
    map when made, and the app must start while Redis is down (API.md §5)."""

    def __init__(self, url: str):
        self.url = redis_url.parse(url)
        self._client = None
        self._lock = threading.Lock()

    @property
    def client(self):
        with self._lock:
            if self._client is None:
                client = with_cluster_errors(connect, self.url)
                self._scripts = {name: client.register_script(source) for name, source in
                                 (("write_marks", WRITE_MARKS), ("incr", INCR), ("reserve", RESERVE),
                                  ("take", TAKE))}
                self._client = client
            return self._client

    def _run(self, script: str, keys: list[str], args: list) -> object:
        """One of the scripts, on keys of one hash slot."""
        self.client  # made (and the scripts registered) at first use
        return with_cluster_errors(self._scripts[script], keys=keys, args=args)

    def get_many(self, keys: list[str]) -> list[str | None]:
        """The values of keys of one hash slot, in one command."""
        return with_cluster_errors(self.client.mget, keys)

    def set_many(self, entries: list[tuple[str, str, int]]) -> None:
        """Set (key, value, ttl seconds) entries in one round trip (per node)."""
        pipe = self.client.pipeline(transaction=False)
        for key, value, ttl in entries:
            pipe.set(key, value, ex=_seconds(ttl))
        with_cluster_errors(pipe.execute)

    def write_marks(self, user_key, marks, cutoff, cutoff_ttl, *, create=False, guard=None):
        """Set the marks (key, ttl), then raise the user's cut-off to at least
        ``cutoff`` and its life to at least ``cutoff_ttl``: one atomic round
        trip. The user key is created only with ``create``. With ``guard`` (a
        key), nothing is written unless that key still exists, and it is
        deleted. Returns None when the guard was gone, "" when the user key
        does not exist afterwards, else the cut-off it holds. Every key must
        share the user's hash tag."""
        keys = [user_key, guard or user_key, *(key for key, _ in marks)]
        args = [int(cutoff), _seconds(cutoff_ttl), int(create), int(guard is not None)]
        return self._run("write_marks", keys, args + [_seconds(ttl) for _, ttl in marks])

    def incr(self, key: str, ttl: int) -> int:
        """Add one to a counter and (re)start its life of ``ttl`` seconds, in
        one atomic round trip. Returns the new count."""
        return int(self._run("incr", [key], [_seconds(ttl)]))

    def reserve(self, key: str, value: str, ttl: int) -> str | None:
        """Set ``key`` for ``ttl`` seconds unless it is set, in one atomic
        round trip. Returns None when this call set it, else the value held."""
        return self._run("reserve", [key], [value, max(int(ttl), 1)])

    def take(self, key: str) -> str | None:
        """The value of ``key``, deleted in the same atomic round trip: of
        concurrent takers one gets it, the others None."""
        return self._run("take", [key], [])

    def delete(self, *keys: str) -> None:
        """Delete keys of any slots: one DEL each, in one pipeline."""
        if keys:
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.delete(key)
            with_cluster_errors(pipe.execute)

    def ping(self) -> bool:
        """Every primary answers (a Cluster's replicas serve nothing here)."""
        if isinstance(self.client, redis.RedisCluster):
            return bool(with_cluster_errors(self.client.ping, target_nodes=redis.RedisCluster.PRIMARIES))
        return bool(with_cluster_errors(self.client.ping))


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
                self._data[key] = (value, now + _seconds(ttl))

    def write_marks(self, user_key, marks, cutoff, cutoff_ttl, *, create=False, guard=None):
        now = time.monotonic()
        with self._lock:
            if guard is not None:
                if self._data.pop(guard, (None, 0.0))[1] <= now:
                    return None
            for key, ttl in marks:
                self._data[key] = ("1", now + _seconds(ttl))
            value, expires = self._data.get(user_key, (None, 0.0))
            if expires > now:
                value = str(max(int(value), int(cutoff)))
                expires = max(expires, now + _seconds(cutoff_ttl))
            elif create:
                value, expires = str(int(cutoff)), now + _seconds(cutoff_ttl)
            else:
                return ""
            self._data[user_key] = (value, expires)
            return value

    def incr(self, key: str, ttl: int) -> int:
        now = time.monotonic()
        with self._lock:
            value, expires = self._data.get(key, ("0", 0.0))
            count = (int(value) if expires > now else 0) + 1
            self._data[key] = (str(count), now + _seconds(ttl))
            return count

    def reserve(self, key: str, value: str, ttl: int) -> str | None:
        now = time.monotonic()
        with self._lock:
            held, expires = self._data.get(key, (None, 0.0))
            if held is not None and expires > now:
                return held
            self._data[key] = (value, now + max(int(ttl), 1))
            return None

    def take(self, key: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            value, expires = self._data.pop(key, (None, 0.0))
            return value if expires > now else None

    def delete(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._data.pop(key, None)

    def ping(self) -> bool:
        return True


def _seconds(ttl) -> int:
    return max(int(ttl), 1)


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

    def write_marks(self, user_key, marks, cutoff, cutoff_ttl, **options):
        return self.backend.write_marks(user_key, marks, cutoff, cutoff_ttl, **options)

    def incr(self, key, ttl):
        return self.backend.incr(key, ttl)

    def reserve(self, key, value, ttl):
        return self.backend.reserve(key, value, ttl)

    def take(self, key):
        return self.backend.take(key)

    def delete(self, *keys):
        return self.backend.delete(*keys)

    def ping(self):
        return self.backend.ping()
