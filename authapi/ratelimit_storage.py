"""flask-limiter's storage on a Redis Cluster, made at first use.

The ``limits`` library's ``RedisClusterStorage`` reads the slot map when it is
made, which flask-limiter does when the app is made: with no cluster node
reachable the app would not start, against API.md §5 (whichever form
REDIS_URL takes, the app starts while Redis is down). This storage (scheme
``authapi+redis+cluster``, which config derives from ``redis+cluster://``)
makes limits' own storage at its first use instead and hands every call to
it; ``check`` says False until a node answers, so flask-limiter counts in
process memory meanwhile (authapi.ratelimit: fail open), as it does when a
single Redis is down. Only the fixed-window methods (RATELIMIT_STRATEGY).
"""

import threading

import redis
from limits.storage import RedisClusterStorage, Storage

SCHEME = "authapi+redis+cluster"


class LazyRedisClusterStorage(Storage):
    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str, wrap_exceptions: bool = False, **options):
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self._uri = uri.removeprefix("authapi+")
        self._options = {"wrap_exceptions": wrap_exceptions, **options}
        self._made = None
        self._lock = threading.Lock()

    def _storage(self) -> RedisClusterStorage:
        with self._lock:
            if self._made is None:
                try:
                    self._made = RedisClusterStorage(self._uri, **self._options)
                except redis.exceptions.RedisClusterException as error:
                    raise redis.ConnectionError(type(error).__name__) from error
            return self._made

    @property
    def base_exceptions(self):
        return redis.RedisError

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return self._storage().incr(key, expiry, amount)

    def get(self, key: str) -> int:
        return self._storage().get(key)

    def get_expiry(self, key: str) -> float:
        return self._storage().get_expiry(key)

    def check(self) -> bool:
        try:
            return self._storage().check()
        except redis.RedisError:
            return False

    def reset(self):
        return self._storage().reset()

    def clear(self, key: str) -> None:
        return self._storage().clear(key)
