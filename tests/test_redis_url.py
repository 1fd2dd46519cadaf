"""REDIS_URL's three forms (API.md §5; config.redis_url): what each configures
for the store and for flask-limiter, the malformed ones refused with one line
that never shows a password, and production starting while a Sentinel group or a
Cluster is down. The real topologies are in test_redis_topologies.py."""

import pytest

import config
from config.redis_url import BadRedisURL, parse

from .commands import assert_refused_with_one_line, clean_env, import_wsgi, production_env
from .conftest import free_port


def test_single_server_urls_pass_through():
    for url in ("redis://h:6379/2", "rediss://:pw@h:6380/0", "unix:///run/redis.sock"):
        parsed = parse(url)
        assert (parsed.kind, parsed.limiter_uri(), parsed.limiter_options()) == ("single", url, {})


def test_sentinel_url_gives_hosts_service_db_and_password():
    parsed = parse("redis+sentinel://:s%40cret@10.0.0.1:26379,sentinel-b:26380/mymaster/3")

    assert parsed.kind == "sentinel"
    assert parsed.hosts == [("10.0.0.1", 26379), ("sentinel-b", 26380)]
    assert (parsed.service, parsed.db, parsed.password) == ("mymaster", 3, "s@cret")
    # limits reads the whole path as the service name: the db goes in its options.
    assert parsed.limiter_uri() == "redis+sentinel://:s%40cret@10.0.0.1:26379,sentinel-b:26380/mymaster"
    assert parsed.limiter_options() == {"db": 3}


def test_sentinel_db_defaults_to_zero():
    assert parse("redis+sentinel://h:26379/mymaster").db == 0


def test_cluster_url_gives_its_nodes():
    parsed = parse("redis+cluster://:pw@a:7000,b:7001")

    assert (parsed.kind, parsed.hosts, parsed.password) == ("cluster", [("a", 7000), ("b", 7001)], "pw")
    # limits' cluster storage, made at first use (authapi.ratelimit_storage).
    assert parsed.limiter_uri() == "authapi+redis+cluster://:pw@a:7000,b:7001"


def test_config_derives_the_limiter_storage_from_the_one_url(tmp_path):
    loaded = config.load_config(environ=production_env(
        tmp_path, REDIS_URL="redis+sentinel://h:26379,i:26379/mymaster/4"))

    assert loaded.RATELIMIT_STORAGE_URI == "redis+sentinel://h:26379,i:26379/mymaster"
    assert loaded.RATELIMIT_STORAGE_OPTIONS["db"] == 4


MALFORMED = [
    "localhost:6379",
    "http://h:6379/0",
    "redis+sentinel://:hunter2secret@h:26379",  # no service
    "redis+sentinel://:hunter2secret@h:26379/mymaster/zero",
    "redis+sentinel://:hunter2secret@h:26379/mymaster/0/extra",
    "redis+sentinel://:hunter2secret@h/mymaster",  # no port
    "redis+cluster://:hunter2secret@h:7000/0",  # a cluster has no db
    "redis+cluster://:hunter2secret@h:7000,:7001",
    "redis+cluster://:hunter2secret@h:99999",
]


@pytest.mark.parametrize("url", MALFORMED)
def test_malformed_url_is_refused(url):
    with pytest.raises(BadRedisURL) as refused:
        parse(url)
    assert "hunter2secret" not in str(refused.value)


@pytest.mark.parametrize("url", MALFORMED[2:5])
def test_malformed_url_refused_at_start_with_one_line_and_no_password(tmp_path, url):
    env = clean_env(AUTHAPI_ENV="development", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", REDIS_URL=url)

    result = import_wsgi(env)

    assert_refused_with_one_line(result, "REDIS_URL")
    assert "hunter2secret" not in result.stderr + result.stdout


@pytest.mark.parametrize("form", ["redis+sentinel://127.0.0.1:{port}/mymaster/1",
                                  "redis+cluster://127.0.0.1:{port}"])
def test_production_starts_while_sentinels_or_cluster_are_down(tmp_path, form):
    env = production_env(tmp_path, REDIS_URL=form.format(port=free_port()))

    result = import_wsgi(env, "import wsgi; print(wsgi.app.config['RATELIMIT_STORAGE_URI'])")

    assert result.returncode == 0, result.stderr
