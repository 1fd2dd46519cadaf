"""A 30-second mixed load on a real gunicorn (register, login, me, refresh,
logout from 16 client threads): no 5xx, and the accounts and sessions it leaves
are consistent. Marked ``soak``: a plain ``make test`` leaves it out, .ci/run
runs it (``pytest -m soak``)."""

import threading
import time
import uuid

import jwt
import pytest
import requests
from sqlalchemy import func, select

from authapi import create_app
from authapi.extensions import db
from authapi.models import AuthSession, User

from .conftest import PASSWORD, base_env, bearer

pytestmark = pytest.mark.soak

DURATION = 30
CLIENTS = 16


def claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


class Client:
    """One simulated user after another: register, log in, read, refresh a few
    times, log out. Keeps what it was given, to check against the database."""

    def __init__(self, url: str, index: int):
        self.url = url
        self.index = index
        self.http = requests.Session()
        self.statuses: list[tuple[str, int]] = []
        self.users: dict[str, int] = {}  # username -> id
        # sid -> (username, jti of the latest refresh token, spent refresh tokens, logged out)
        self.sessions: dict[str, dict] = {}

    def call(self, name, method, path, expected, **kwargs):
        response = self.http.request(method, self.url + path, timeout=30, **kwargs)
        self.statuses.append((name, response.status_code))
        assert response.status_code == expected, (name, response.status_code, response.text)
        return response.json() if response.content else None

    def run(self, stop: threading.Event):
        while not stop.is_set():
            name = f"soak{self.index}x{uuid.uuid4().hex[:10]}"
            user = self.call("register", "POST", "/auth/register", 201, json={
                "email": f"{name}@example.com", "username": name, "password": PASSWORD})
            self.users[name] = user["id"]
            pair = self.call("login", "POST", "/auth/login", 200, json={"username": name, "password": PASSWORD})
            sid = claims(pair["access_token"])["sid"]
            record = self.sessions[sid] = {"username": name, "spent": [], "logged_out": False,
                                           "jti": claims(pair["refresh_token"])["jti"]}
            for _ in range(3):
                assert self.call("me", "GET", "/users/me", 200, headers=bearer(pair["access_token"]))["id"] == user["id"]
                new = self.call("refresh", "POST", "/auth/refresh", 200, headers=bearer(pair["refresh_token"]))
                record["spent"].append(pair["refresh_token"])
                record["jti"] = claims(new["refresh_token"])["jti"]
                pair = new
            self.call("logout", "POST", "/auth/logout", 200, headers=bearer(pair["access_token"]))
            record["logged_out"] = True
            self.call("me after logout", "GET", "/users/me", 401, headers=bearer(pair["access_token"]))


# Long on purpose: one load run and the checks of what it left behind.
def test_mixed_load_leaves_no_5xx_and_consistent_accounts_and_sessions(serve, postgres_url, redis_url):
    url = serve(workers=2).url
    clients = [Client(url, i) for i in range(CLIENTS)]
    stop = threading.Event()
    failures = []

    def drive(client):
        try:
            client.run(stop)
        except BaseException as exc:  # noqa: BLE001  reported below, with the others
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=drive, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    time.sleep(DURATION)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)

    assert not failures, failures[:3]
    statuses = [s for c in clients for _, s in c.statuses]
    assert len(statuses) > CLIENTS * 10
    assert not [s for s in statuses if s >= 500]

    sessions = {sid: record for c in clients for sid, record in c.sessions.items()}
    users = {name: user_id for c in clients for name, user_id in c.users.items()}
    app = create_app("testing", environ=base_env(postgres_url, redis_url))
    with app.app_context():
        for name, user_id in users.items():
            rows = db.session.scalars(select(User).where(func.lower(User.username) == name.lower())).all()
            assert [row.id for row in rows] == [user_id], name
        rows = {row.id: row for row in db.session.scalars(
            select(AuthSession).where(AuthSession.id.in_(list(sessions))))}
        assert rows.keys() == sessions.keys()
        for sid, record in sessions.items():
            row = rows[sid]
            # Each session belongs to the user that logged in, and only the last
            # refresh token handed out can still be exchanged.
            assert row.user_id == users[record["username"]], sid
            assert row.refresh_jti == record["jti"], sid
            assert all(claims(token)["jti"] != row.refresh_jti for token in record["spent"])
            assert (row.revoked_at is not None) == record["logged_out"], sid

    # And over HTTP: a spent refresh token of a session is refused.
    for record in list(sessions.values())[:20]:
        response = requests.post(url + "/auth/refresh", headers=bearer(record["spent"][0]), timeout=30)
        assert response.status_code == 401, response.text
