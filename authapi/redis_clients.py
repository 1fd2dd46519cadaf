"""redis-py's client for each form of REDIS_URL (config.redis_url): ``Redis``
for one server, ``Sentinel(...).master_for(...)`` for a Sentinel group,
``RedisCluster`` for a Cluster. No client of our own: only their options.

Failing over is left to these clients: a Sentinel-managed connection asks the
sentinels for the primary's address at each connect, and a Cluster client
reloads its slot map after a connection error or a MOVED. Until they find the
new primary every command raises, and authapi answers 503 (fail closed).
"""

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode
from redis.exceptions import RedisClusterException
from redis.retry import Retry
from redis.sentinel import Sentinel

# Short timeouts: a token check that cannot reach Redis must fail closed
# quickly (503), not hold a worker for the OS's TCP timeout. One immediate
# retry replaces a pooled connection that a restarted Redis dropped; redis-py's
# default (3 retries with backoff) held every request 4 s before its 503 while
# Redis was down.
TIMEOUTS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


def _retry():
    return Retry(NoBackoff(), 1)


def connect(url):
    """A client for the parsed URL, answering str (decode_responses)."""
    if url.kind == "single":
        return redis.Redis.from_url(url.url, health_check_interval=30, retry=_retry(),
                                    decode_responses=True, **TIMEOUTS)
    if url.kind == "sentinel":
        # The URL's credentials go to the sentinels and the primary alike, as
        # the limits library (flask-limiter's storage) sends them.
        sentinel = Sentinel(url.hosts, sentinel_kwargs={**TIMEOUTS, **url.auth()}, **TIMEOUTS)
        return sentinel.master_for(url.service, db=url.db, retry=_retry(), decode_responses=True,
                                   **TIMEOUTS, **url.auth())
    return redis.RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in url.hosts],
        retry=_retry(), decode_responses=True, **TIMEOUTS, **url.auth(),
    )


def with_cluster_errors(call, *args, **kwargs):
    """``call(...)``, with redis-py's cluster errors that are not RedisErrors
    (no node reachable at start, a slot without a node mid-failover) raised
    as ConnectionError, so every caller's RedisError handling (503) holds."""
    try:
        return call(*args, **kwargs)
    except RedisClusterException as error:
        raise redis.ConnectionError(type(error).__name__) from error
