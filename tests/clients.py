"""Talking to the API as a client does: the error envelope, bearer headers,
users registered and logged in through a test client (AuthActions) or over
HTTP to a real server (LiveAuth), and tokens crafted with PyJWT.

conftest.py re-exports every name here: ``from .conftest import error_code``.
"""

import uuid

import jwt
import requests

from .servers import base_env

PASSWORD = "correct horse battery staple"


# ---------------------------------------------------------------- responses and tokens


def error_code(response) -> str:
    """The code of an error answer in the contract's envelope (API.md §1), from
    a Flask test response or a ``requests`` one."""
    body = response.get_json() if hasattr(response, "get_json") else response.json()
    assert body is not None, response.get_data(as_text=True)
    assert set(body) == {"error"} and {"code", "message"} <= set(body["error"]), body
    return body["error"]["code"]


def assert_refused(response, status, code):
    assert (response.status_code, error_code(response)) == (status, code)


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def me(client, token):
    return client.get("/users/me", headers=bearer(token))


def refresh(client, token):
    return client.post("/auth/refresh", headers=bearer(token))


JWT_SECRET = base_env("sqlite://", None)["JWT_SECRET_KEY"]


def claims_of(token, **options):
    """The claims of one of our tokens, its signature checked."""
    return jwt.decode(
        token, JWT_SECRET, algorithms=["HS256"], options={"verify_aud": False, **options}
    )


def sign(claims, key=JWT_SECRET, algorithm="HS256", headers=None):
    """A token of ``claims`` signed as the tests' app signs (or with ``key``)."""
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


# ---------------------------------------------------------------- users


def post_login(client, username, password=PASSWORD, **kwargs):
    """One login attempt through a test client; the response, whatever it is."""
    return client.post("/auth/login", json={"username": username, "password": password}, **kwargs)


class AuthActions:
    """Register and log in users through the API, the way a client would."""

    def __init__(self, client):
        self.client = client
        self.count = 0

    def register(self, username=None, email=None, password=PASSWORD, **extra):
        self.count += 1
        username = username or f"user{self.count}"
        email = email or f"{username}@example.com"
        response = self.client.post(
            "/auth/register",
            json={"email": email, "username": username, "password": password, **extra},
        )
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def login(self, username, password=PASSWORD, **kwargs):
        response = post_login(self.client, username, password, **kwargs)
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    def user(self, **kwargs):
        """A registered, logged-in user: (user json, token pair)."""
        user = self.register(**kwargs)
        return user, self.login(user["username"], kwargs.get("password", PASSWORD))


class LiveAuth:
    """AuthActions for a real server at ``url``, over HTTP with ``requests``."""

    def __init__(self, url: str, timeout: float = 30):
        self.url = url
        self.timeout = timeout

    def register(self, username, email=None, password=PASSWORD) -> dict:
        response = requests.post(self.url + "/auth/register", timeout=self.timeout, json={
            "email": email or f"{username}@example.com", "username": username, "password": password})
        assert response.status_code == 201, response.text
        return response.json()

    def login(self, username, password=PASSWORD) -> dict:
        response = requests.post(self.url + "/auth/login", timeout=self.timeout,
                                 json={"username": username, "password": password})
        assert response.status_code == 200, response.text
        return response.json()

    def user(self, prefix: str = "u") -> tuple[dict, dict]:
        """A new user with a unique name, logged in: (user json, token pair)."""
        name = prefix + uuid.uuid4().hex[:12]
        return self.register(name), self.login(name)


