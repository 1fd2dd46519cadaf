"""Logs (API.md §5 LOG_FORMAT, LOG_LEVEL): one JSON object a line, one line per
request, security events with an ``event`` field, and never a password, token,
reset link or Authorization header, checked on the real output of a gunicorn
that served a whole account's life."""

import io
import json
import logging
import re

import pytest
import requests

from authapi.extensions import db
from authapi.logs import HANDLER_NAME
from authapi.models import User
from config import ConfigError, load_config

from .conftest import AuthActions, base_env, bearer, claims_of, mail_settings

PASSWORDS = {
    "first": "first secret passphrase",
    "second": "second secret passphrase",
    "third": "third secret passphrase",
    "wrong": "wrong guess passphrase",
    "admin": "admin secret passphrase",
    "created": "created user passphrase",
    # Typed into the username field by mistake: the attempted login is not logged.
    "as_username": "password-typed-as-username",
}
SECURITY_EVENTS = {
    "register", "login", "login_failed", "lockout", "login_locked", "refresh_reuse",
    "password_change", "password_reset", "logout_all", "admin_create", "admin_update",
}


@pytest.fixture(scope="session")
def database_url(postgres_url):
    return postgres_url


def link_token(message) -> tuple[str, str]:
    link = re.search(r"https?://\S+", message.get_content()).group(0)
    return link, link.rsplit("token=", 1)[1]


# Long on purpose: one account's whole life on one server, collecting every
# secret it handled, then one read of the log against all of them.
def test_a_full_flow_logs_json_events_and_no_secret(make_app, serve, smtp_server):
    app = make_app()
    server = serve(LOG_FORMAT="json", LOCKOUT_THRESHOLD="2", **mail_settings(smtp_server.port))
    api = server.url
    secrets = list(PASSWORDS.values())

    def call(method, path, **kwargs):
        return requests.request(method, api + path, timeout=10, **kwargs)

    # An admin, made the way an operator would promote one.
    assert call("POST", "/auth/register", json={
        "email": "root@example.com", "username": "root", "password": PASSWORDS["admin"]}).status_code == 201
    with app.app_context():
        db.session.query(User).filter_by(username="root").update({"role": "admin"})
        db.session.commit()

    ada = call("POST", "/auth/register", json={
        "email": "ada@example.com", "username": "ada", "password": PASSWORDS["first"]}).json()
    link, token = link_token(smtp_server.wait_for("ada@example.com", subject="Confirm your email address")[0])
    secrets += [link, token]
    assert call("POST", "/auth/email/verify", json={"token": token}).status_code == 200

    assert call("POST", "/auth/login", json={"username": "ada", "password": PASSWORDS["wrong"]}).status_code == 401
    pair = call("POST", "/auth/login", json={"username": "ada", "password": PASSWORDS["first"]}).json()
    me = call("GET", "/users/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200
    # A token in a query string, where no client should put one.
    assert call("GET", "/users/me?access_token=" + pair["access_token"], headers=bearer(pair["access_token"])).status_code == 200
    rotated = call("POST", "/auth/refresh", headers=bearer(pair["refresh_token"])).json()
    assert call("POST", "/auth/refresh", json={"refresh_token": pair["refresh_token"]}).status_code == 401
    secrets += [pair["access_token"], pair["refresh_token"], rotated["access_token"], rotated["refresh_token"]]

    pair = call("POST", "/auth/login", data={
        "grant_type": "password", "username": "ada", "password": PASSWORDS["first"]}).json()
    changed = call("POST", "/auth/password/change", headers=bearer(pair["access_token"]), json={
        "current_password": PASSWORDS["first"], "new_password": PASSWORDS["second"]}).json()
    secrets += [pair["access_token"], pair["refresh_token"], changed["access_token"], changed["refresh_token"]]

    assert call("POST", "/auth/password/forgot", json={"email": "ada@example.com"}).status_code == 202
    link, token = link_token(smtp_server.wait_for("ada@example.com", subject="Reset your password")[0])
    secrets += [link, token]
    assert call("POST", "/auth/password/reset", json={"token": token, "new_password": PASSWORDS["third"]}).status_code == 200

    pair = call("POST", "/auth/login", json={"username": "ada@example.com", "password": PASSWORDS["third"]}).json()
    assert call("POST", "/auth/logout-all", headers=bearer(pair["access_token"])).status_code == 200
    secrets += [pair["access_token"], pair["refresh_token"]]

    admin = call("POST", "/auth/login", json={"username": "root", "password": PASSWORDS["admin"]}).json()
    assert call("PATCH", f"/users/{ada['id']}", headers=bearer(admin["access_token"]), json={"full_name": "Ada L"}).status_code == 200
    assert call("POST", "/users", headers=bearer(admin["access_token"]), json={
        "email": "bob@example.com", "username": "bob", "password": PASSWORDS["created"]}).status_code == 201
    secrets += [admin["access_token"], admin["refresh_token"]]

    forged = "Bearer eyJhbGciOiJIUzI1NiJ9.forged-token-value.signature"
    assert call("GET", "/users/me", headers={"Authorization": forged}).status_code == 401
    secrets.append(forged.split(" ", 1)[1])
    for _ in range(2):
        call("POST", "/auth/login", json={"username": PASSWORDS["as_username"], "password": PASSWORDS["wrong"]})
    locked = call("POST", "/auth/login", json={"username": PASSWORDS["as_username"], "password": PASSWORDS["wrong"]})
    assert locked.status_code == 429  # one past the threshold: the lockout
    still = call("POST", "/auth/login", json={"username": PASSWORDS["as_username"], "password": PASSWORDS["wrong"]})
    assert still.status_code == 429  # while locked

    output = server.log_path.read_text()
    lines = [line for line in output.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object

    for secret in secrets:
        assert secret not in output, f"a secret reached the log: {secret[:12]}..."
    assert "Bearer" not in output
    assert all(isinstance(r, dict) and {"time", "level", "logger", "message"} <= r.keys() for r in records)
    assert SECURITY_EVENTS <= {r.get("event") for r in records}
    request_line = next(
        r for r in records
        if r["logger"] == "authapi.request" and r.get("request_id") == me.headers["X-Request-ID"]
    )
    assert request_line["method"] == "GET"
    assert request_line["path"] == "/users/me"
    assert request_line["status"] == 200
    assert isinstance(request_line["duration_ms"], (int, float))
    assert request_line["user_id"] == ada["id"]
    assert request_line["client_ip"] == "127.0.0.1"
    login_event = next(r for r in records if r.get("event") == "login" and r.get("user_id") == ada["id"])
    login_line = next(
        r for r in records if r["logger"] == "authapi.request" and r["request_id"] == login_event["request_id"]
    )
    # A login has no token yet; its request line names the user its event named.
    assert login_line["user_id"] == ada["id"]
    assert login_line["path"] == "/auth/login"


def captured_lines(app, action) -> list[str]:
    """Run ``action`` and return what the app's configured log handler wrote."""
    configured = next(h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(configured.formatter)
    for log_filter in configured.filters:
        handler.addFilter(log_filter)
    logging.getLogger().addHandler(handler)
    try:
        action(app.test_client())
    finally:
        logging.getLogger().removeHandler(handler)
    return stream.getvalue().splitlines()


def failed_login(client):
    client.post("/auth/login", json={"username": "nobody", "password": PASSWORDS["wrong"]}, headers={"X-Request-ID": "trace-1"})


def test_json_format_writes_one_object_a_line(make_app):
    lines = captured_lines(make_app(LOG_FORMAT="json"), failed_login)

    records = [json.loads(line) for line in lines]
    event = next(r for r in records if r.get("event") == "login_failed")
    request_line = next(r for r in records if r["logger"] == "authapi.request")
    assert event["request_id"] == request_line["request_id"] == "trace-1"
    assert event["level"] == "INFO" and event["time"].endswith("+00:00")
    assert request_line["status"] == 401 and request_line["user_id"] is None


@pytest.mark.parametrize("path", ["/users/me", "/auth/verify", "/auth/sessions"])
def test_the_request_line_of_a_token_check_names_its_user(make_app, path):
    app = make_app(LOG_FORMAT="json")
    pair = AuthActions(app.test_client()).user(username="ada")[1]

    lines = captured_lines(app, lambda client: client.get(path, headers=bearer(pair["access_token"])))

    line = json.loads(lines[-1])
    assert (line["logger"], line["path"], line["status"]) == ("authapi.request", path, 200)
    assert line["user_id"] == int(claims_of(pair["access_token"])["sub"])
    assert line["request_id"] and "client_ip" in line and line["duration_ms"] >= 0


def test_text_format_shows_the_event_and_request_id(make_app):
    lines = captured_lines(make_app(LOG_FORMAT="text"), failed_login)

    event_line = next(line for line in lines if "event=login_failed" in line)
    assert "request_id=trace-1" in event_line
    assert any(re.search(r"POST /auth/login 401 [0-9.]+ms", line) for line in lines)
    assert PASSWORDS["wrong"] not in "\n".join(lines)


def test_log_level_filters_records(make_app):
    lines = captured_lines(make_app(LOG_FORMAT="json", LOG_LEVEL="WARNING"), failed_login)

    assert lines == []


def test_production_logs_json_by_default():
    config = load_config("production", base_env("sqlite://", "redis://127.0.0.1:6379/0", AUTHAPI_ENV="production"))

    assert config.LOG_FORMAT == "json"


@pytest.mark.parametrize("name, value", [("LOG_LEVEL", "verbose"), ("LOG_FORMAT", "xml")])
def test_unknown_log_setting_is_refused_naming_it(name, value):
    with pytest.raises(ConfigError, match=name):
        load_config("testing", base_env("sqlite://", None, **{name: value}))
