"""Token introspection (RFC 7662, API.md §11): whether a token would be
accepted now, by the rules the API itself applies, and the client
authentication that guards the question.

It only reads: the token is neither spent nor revoked, and no row or mark is
written (save the revocation rebuild any check makes when Redis lost a user's
key, which writes what the database already says).
"""

import hmac
from urllib.parse import unquote_plus

from flask import current_app
from flask_jwt_extended import decode_token
from jwt.exceptions import InvalidTokenError
from flask_jwt_extended.exceptions import JWTExtendedException

from .. import revocation
from ..extensions import db
from ..models import User
from .sessions import is_current_refresh_token

INACTIVE = {"active": False}
TOKEN_TYPES = {"access": "access_token", "refresh": "refresh_token"}


def client_authenticated(clients: dict[str, str], authorization) -> bool:
    """Whether werkzeug's parsed ``authorization`` is HTTP Basic with the id
    and secret of one of ``clients``. RFC 6749 §2.3.1 form-encodes both
    before Basic (Authlib does), curl -u does not: either form is accepted.
    Every pair is compared, in constant time, so neither an id's existence
    nor a secret's prefix shows in the timing."""
    if authorization is None or authorization.type != "basic":
        return False
    sent = [(client_id.encode(), secret.encode()) for client_id, secret in {
        (authorization.username or "", authorization.password or ""),
        (unquote_plus(authorization.username or ""), unquote_plus(authorization.password or "")),
    }]
    matched = False
    for known_id, known_secret in clients.items():
        for client_id, secret in sent:
            same_id = hmac.compare_digest(client_id, known_id.encode())
            same_secret = hmac.compare_digest(secret, known_secret.encode())
            matched |= same_id and same_secret
    return matched


def introspect(token: str, token_type_hint: str | None = None) -> dict:
    """The RFC 7662 answer for ``token``: its claims when an endpoint of the
    API would accept it now, else ``{"active": false}``. The hint is not
    needed (the token says its type) and is ignored, as RFC 7662 allows.
    Raises the store's errors (503): an unknown revocation state is no answer."""
    try:
        claims = decode_token(token)
    except (InvalidTokenError, JWTExtendedException, ValueError, TypeError):
        return dict(INACTIVE)
    if revocation.is_revoked(claims):
        return dict(INACTIVE)
    user = db.session.get(User, int(claims["sub"]))
    if revocation.is_revoked_by_account(user, claims):
        return dict(INACTIVE)
    if claims["type"] == "refresh" and not is_current_refresh_token(user, claims):
        return dict(INACTIVE)
    return _answer(claims)


def _answer(claims: dict) -> dict:
    answer = {"active": True, "token_type": TOKEN_TYPES[claims["type"]]}
    for name in ("sub", "exp", "iat", "jti", "sid"):
        answer[name] = claims[name]
    if claims["type"] == "access":
        answer["role"] = claims["role"]
    config = current_app.config
    if config["JWT_ISSUER"]:
        answer["iss"] = claims["iss"]
    if config["JWT_AUDIENCE"]:
        answer["aud"] = claims["aud"]
    return answer
