"""The client address (finding 6 of issue 13): whatever X-Forwarded-For a
trusted proxy passes on, every reader (the session row, the log, the rate
limit) sees one normalised address or none, and a login is never a 500 for it.
On PostgreSQL, where a session's ip is a VARCHAR(45)."""

import logging

import pytest

from authapi.http import client_address
from authapi.logs import RequestContext

from .conftest import PASSWORD, bearer


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


@pytest.mark.parametrize(
    "value, expected",
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
        ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),  # IPv4 seen through a dual-stack socket
        ("fe80::1%eth0", "fe80::1"),
        ("fe80::1%" + "x" * 60, "fe80::1"),
        ("1" * 60, None),
        ("not-an-ip", None),
        ("192.0.2.1:8080", None),
        ("192.0.2.256", None),
        ("", None),
        (None, None),
        ("\x00", None),
        ("\ud800", None),
    ],
)
def test_client_address_is_one_text_form_or_none(value, expected):
    assert client_address(value) == expected


@pytest.fixture
def proxied(make_app):
    app = make_app(PROXY_FIX_X_FOR="1")
    client = app.test_client()
    client.post(
        "/auth/register", json={"email": "ada@example.com", "username": "ada", "password": PASSWORD}
    )
    return app, client


def login_from(client, forwarded_for):
    return client.post(
        "/auth/login",
        json={"username": "ada", "password": PASSWORD},
        headers={"X-Forwarded-For": forwarded_for},
    )


@pytest.mark.parametrize(
    "forwarded_for, stored",
    [
        ("1" * 60, None),
        ("a" * 46, None),
        ("not-an-ip", None),
        ("<script>", None),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("fe80:0000::0001%" + "eth" * 20, "fe80::1"),
        ("198.51.100.1, 203.0.113.9", "203.0.113.9"),  # one trusted proxy: the last hop
    ],
)
def test_a_login_stores_the_normalised_forwarded_address(proxied, forwarded_for, stored):
    _, client = proxied

    response = login_from(client, forwarded_for)

    assert response.status_code == 200, response.get_json()
    sessions = client.get("/auth/sessions", headers=bearer(response.get_json()["access_token"]))
    assert [item["ip"] for item in sessions.get_json()["items"]] == [stored]


def test_the_log_names_the_normalised_address(proxied, caplog):
    _, client = proxied
    caplog.handler.addFilter(RequestContext())

    with caplog.at_level(logging.INFO):
        login_from(client, "::ffff:192.0.2.7")
        login_from(client, "x" * 60)

    logins = [r.client_ip for r in caplog.records if getattr(r, "event", None) == "login"]
    assert logins == ["192.0.2.7", None]


def test_the_rate_limit_counts_one_address_in_any_spelling(make_app):
    client = make_app(
        PROXY_FIX_X_FOR="1", RATELIMIT_ENABLED="true", RATELIMIT_LOGIN="2 per minute"
    ).test_client()
    spellings = ["192.0.2.9", "::ffff:192.0.2.9", "::FFFF:c000:209"]

    statuses = [
        client.post(
            "/auth/login",
            json={"username": "nobody", "password": "wrong password"},
            headers={"X-Forwarded-For": spelling},
        ).status_code
        for spelling in spellings
    ]

    assert statuses == [401, 401, 429]
