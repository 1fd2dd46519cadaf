"""The lean floors of GET /users/me and /auth/verify: what each needs, done by
hand in bare Flask views under the same gunicorn (issue 18's side-by-side).

PyJWT's HS256 check of the token, one Redis MGET of its revocation keys (the
names authapi.revocation writes), and for me one prepared psycopg SELECT by
primary key in autocommit and json.dumps of the row. No hooks, no logging,
no metrics, no error envelope, no fail-closed answers: the least a request
can cost on this stack. Reported beside me and verify, not targets.
"""

import json
import os

import jwt
import psycopg
import redis
from flask import Flask, Response, request

from authapi.revocation import session_key, user_key

app = Flask(__name__)
SECRET = os.environ["JWT_SECRET_KEY"]
store = redis.Redis.from_url(os.environ["REDIS_URL"])
DATABASE = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://")
USER = ("SELECT id, email, username, full_name, role, is_active, is_verified, "
        "totp_enabled_at IS NOT NULL AS mfa_enabled, created_at, updated_at, last_login_at "
        "FROM users WHERE id = %s")
_connection = None  # one per worker, made after the fork: a sync worker serves one request at a time


def connection():
    global _connection
    if _connection is None or _connection.closed:
        _connection = psycopg.connect(DATABASE, autocommit=True)
    return _connection


def claims():
    """The token's claims if it is valid and not revoked, else None."""
    header = request.headers.get("Authorization", "")
    try:
        token_claims = jwt.decode(header.removeprefix("Bearer "), SECRET, algorithms=["HS256"])
    except jwt.InvalidTokenError:
        return None
    user_id = token_claims["sub"]
    mark, cutoff = store.mget([session_key(user_id, token_claims["sid"]), user_key(user_id)])
    if mark is not None or cutoff is None or token_claims["iat"] < int(cutoff):
        return None
    return token_claims


def refused():
    return Response('{"error": "unauthorized"}', 401, mimetype="application/json")


@app.get("/me")
def me():
    token_claims = claims()
    if token_claims is None:
        return refused()
    cursor = connection().execute(USER, (int(token_claims["sub"]),), prepare=True)
    row = cursor.fetchone()
    user = {column.name: value for column, value in zip(cursor.description, row)}
    body = json.dumps(user, default=lambda value: value.isoformat())
    return Response(body, mimetype="application/json")


@app.get("/verify")
def verify():
    token_claims = claims()
    if token_claims is None:
        return refused()
    return Response("", headers={"X-Auth-User-Id": token_claims["sub"]})


@app.get("/")
def index():
    return ""  # the bench's readiness probe
