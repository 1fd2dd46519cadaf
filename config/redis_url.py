"""The three forms of ``REDIS_URL`` (API.md §5), read in one place.

- one server: ``redis://``, ``rediss://`` (TLS) or ``unix://``, as redis-py reads them;
- Redis Sentinel: ``redis+sentinel://[:password@]host:port[,host:port...]/<service>[/db]``;
- Redis Cluster: ``redis+cluster://[:password@]host:port[,host:port...]``.

The store (authapi.store), flask-limiter's storage (config.Config.derive) and
the check of the setting (config.table) all read the URL through ``parse``, so
one URL configures every use the same way. Nothing here connects anywhere.
"""

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

SINGLE = {"redis", "rediss", "unix"}
SENTINEL = "redis+sentinel"
CLUSTER = "redis+cluster"


class BadRedisURL(ValueError):
    """The URL is none of the three forms; the message never holds the URL."""


@dataclass(frozen=True)
class RedisURL:
    kind: str  # "single", "sentinel" or "cluster"
    url: str
    hosts: list[tuple[str, int]] = field(default_factory=list)
    service: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None

    def auth(self) -> dict:
        """The credentials as redis-py's keyword arguments."""
        found = {"username": self.username, "password": self.password}
        return {key: value for key, value in found.items() if value}

    def limiter_uri(self) -> str:
        """The URL as the ``limits`` library reads it: it takes the whole path
        of a sentinel URL as the service name, so the db goes in the options;
        a cluster's storage is made at first use (authapi.ratelimit_storage)."""
        if self.kind == "cluster":
            return "authapi+" + self.url
        if self.kind != "sentinel":
            return self.url
        netloc = urlsplit(self.url).netloc
        return f"{SENTINEL}://{netloc}/{self.service}"

    def limiter_options(self) -> dict:
        return {"db": self.db} if self.kind == "sentinel" else {}


def parse(url: str) -> RedisURL:
    """The URL's form and parts. Raises BadRedisURL."""
    try:
        parts = urlsplit(url)
        scheme = parts.scheme
    except ValueError:
        raise BadRedisURL("not a URL") from None
    if scheme in SINGLE:
        return RedisURL("single", url)
    if scheme not in (SENTINEL, CLUSTER):
        raise BadRedisURL("its scheme is none of redis, rediss, unix, redis+sentinel, redis+cluster")
    hosts = _hosts(parts.netloc.rpartition("@")[2])
    credentials = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    username, _, password = credentials.partition(":")
    path = [piece for piece in parts.path.split("/") if piece]
    common = dict(hosts=hosts, username=unquote(username) or None, password=unquote(password) or None)
    if scheme == CLUSTER:
        if path or parts.query:
            raise BadRedisURL("a cluster URL has no path (a cluster has only db 0)")
        return RedisURL("cluster", url, **common)
    if not path or len(path) > 2:
        raise BadRedisURL("a sentinel URL needs /<service name> and may add /<db>")
    if len(path) == 2 and not path[1].isdigit():
        raise BadRedisURL("the db after the sentinel service name is not a number")
    return RedisURL("sentinel", url, service=unquote(path[0]),
                    db=int(path[1]) if len(path) == 2 else 0, **common)


def _hosts(netloc: str) -> list[tuple[str, int]]:
    hosts = []
    for item in netloc.split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadRedisURL("each host needs host:port")
        hosts.append((host.strip("[]"), int(port)))
    return hosts
