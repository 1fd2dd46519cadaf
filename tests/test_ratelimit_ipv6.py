"""Per-client limits count an IPv6 client by its /64 (a subscriber picks any
address in it at will), an IPv4 client by its address, and an IPv4-mapped IPv6
address as the IPv4 address it maps."""

import pytest

from authapi import ratelimit

LIMIT = 3
# Refused by the schema (422): the limit is checked first, and nothing is hashed.
BAD_LOGIN = {"username": "someone"}


@pytest.fixture(scope="session")
def database_url(postgres_url):
    # Limits live in Redis; one database is enough.
    return postgres_url


@pytest.fixture
def client(make_app):
    app = make_app(RATELIMIT_ENABLED="true", RATELIMIT_LOGIN=f"{LIMIT} per minute",
                   PROXY_FIX_X_FOR=1)
    return app.test_client()


def login_from(client, address):
    return client.post("/auth/login", json=BAD_LOGIN, headers={"X-Forwarded-For": address})


def spend_limit(client, addresses):
    """Use up the limit from these addresses in turn; all still answered."""
    for index in range(LIMIT):
        assert login_from(client, addresses[index % len(addresses)]).status_code == 422


def test_addresses_of_one_ipv6_slash_64_share_a_limit(client):
    spend_limit(client, ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:abcd:ef:1234:5678"])
    refused = login_from(client, "2001:db8:1:2:ffff:ffff:ffff:ffff")
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_another_ipv6_slash_64_has_its_own_limit(client):
    spend_limit(client, ["2001:db8:1:2::1"])
    assert login_from(client, "2001:db8:1:2::1").status_code == 429
    assert login_from(client, "2001:db8:1:3::1").status_code == 422


def test_ipv4_clients_are_still_counted_per_address(client):
    spend_limit(client, ["192.0.2.1"])
    assert login_from(client, "192.0.2.1").status_code == 429
    assert login_from(client, "192.0.2.2").status_code == 422


def test_an_ipv4_mapped_ipv6_address_counts_as_its_ipv4_address(client):
    spend_limit(client, ["::ffff:192.0.2.1", "192.0.2.1"])
    assert login_from(client, "::ffff:192.0.2.1").status_code == 429
    assert login_from(client, "192.0.2.1").status_code == 429
    assert login_from(client, "::ffff:192.0.2.2").status_code == 422


@pytest.mark.parametrize("address, key", [
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:DB8:1:2::9", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("::ffff:198.51.100.7", "198.51.100.7"),
    ("198.51.100.7", "198.51.100.7"),
    ("unix-socket", "unix-socket"),
])
def test_client_key(make_app, address, key):
    app = make_app()
    with app.test_request_context(environ_base={"REMOTE_ADDR": address}):
        assert ratelimit.client_key() == key
