"""The token check of the hot paths (``/auth/verify``, ``GET /users/me``,
``POST /auth/refresh``): the rules of flask-jwt-extended's general path
(``jwt_required``), with less work per request.

The general path parses each token four times (PyJWT checks its base64 byte by
byte each time), prepares the HMAC key on every decode (PyJWT tries to read
the secret as a DER key and as a certificate), and decodes once without the
signature for ``tokens.decode_key`` (docs/performance.md has the profile).
Here a token is decoded once per worker: ``jwt.decode`` with the general
path's own arguments (the key of ``keys.verification_key``, the one
algorithm, issuer, audience, no leeway), then ``tokens.check_claims`` and the
type. Its claims are then kept, keyed by
the whole token string, in a small per-worker cache (``CACHE_SIZE``, oldest
first out): a later request with the same string skips the decode, but its
expiry, not-before and issued-at are checked again against the clock, and
revocation (``revocation.is_revoked``, one MGET) on every request.

Only acceptance is fast. A request this path does not accept (an
Authorization header in any form but ``Bearer <token>``, a token failing any
check) is judged again by the general path, which answers with its own
refusal: the two paths can differ in speed, not in outcome.
tests/test_token_check.py runs a table of good and bad tokens through both.
"""

import re
import threading
import time
from types import MappingProxyType

import jwt
from flask import current_app, g, request
from flask_jwt_extended.exceptions import JWTDecodeError
# The general path without the user load (the hot paths read the user, if at
# all, themselves). Private to flask-jwt-extended, whose version
# requirements.txt pins; tests/test_token_check.py would catch a change.
from flask_jwt_extended.view_decorators import _decode_jwt_from_request

from . import errors, keys, revocation, tokens

CACHE_SIZE = 1024
EXTENSION = "authapi_token_check"
# The one form the fast path reads: the scheme, one space, a compact JWS.
BEARER = re.compile(r"Bearer ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)")


class TokenCheck:
    """One app's decoding settings and its cache of decoded tokens:
    token string -> (claims, not before, expires)."""

    def __init__(self, config):
        # What flask-jwt-extended's _decode_jwt_from_config passes to PyJWT
        # (config/ never sets JWT_DECODE_ALGORITHMS: the one algorithm).
        self.algorithms = [config["JWT_ALGORITHM"]]
        self.issuer = config["JWT_DECODE_ISSUER"]
        self.audience = config["JWT_DECODE_AUDIENCE"]
        self.leeway = config["JWT_DECODE_LEEWAY"]
        self.options = {"verify_aud": self.audience is not None, "verify_sub": config["JWT_VERIFY_SUB"]}
        self.cache: dict[str, tuple] = {}
        self._lock = threading.Lock()

    def claims(self, token: str, token_type: str, now: float | None = None):
        """The claims of ``token`` if the general path would accept it as
        ``token_type`` at ``now`` (default: the clock's time), revocation
        aside, else None. A token not yet decoded is judged by PyJWT at the
        clock's time."""
        entry = self.cache.get(token)
        if entry is None:
            entry = self._decode(token)
            if entry is None:
                return None
            # A refresh token is spent by its one use: only access tokens
            # come again.
            if entry[0]["type"] == "access":
                self._keep(token, entry)
        claims, not_before, expires = entry
        # PyJWT's own comparisons (iat and nbf not after now, exp after now).
        now = time.time() if now is None else now
        if not (not_before <= now + self.leeway and expires > now - self.leeway):
            return None
        return claims if claims["type"] == token_type else None

    def _decode(self, token: str):
        try:
            # An HS secret is the key whatever the header says; jwt.decode
            # checks the header as jwt.get_unverified_header would.
            header = jwt.get_unverified_header(token) if keys.asymmetric() else {}
            claims = jwt.decode(token, keys.verification_key(header), algorithms=self.algorithms,
                                audience=self.audience, issuer=self.issuer, leeway=self.leeway,
                                options=self.options)
            tokens.check_claims(claims)
        except (jwt.PyJWTError, JWTDecodeError):
            return None
        # check_claims requires iat and exp of every token; nbf is optional
        # for refresh tokens. PyJWT converted each with int() already.
        not_before = max(int(claims["iat"]), int(claims.get("nbf", claims["iat"])))
        return MappingProxyType(claims), not_before, int(claims["exp"])

    def _keep(self, token: str, entry: tuple) -> None:
        with self._lock:
            if len(self.cache) >= CACHE_SIZE:
                del self.cache[next(iter(self.cache))]
            self.cache[token] = entry


def init_app(app) -> None:
    app.extensions[EXTENSION] = TokenCheck(app.config)


def access_claims() -> dict:
    """The claims of the request's access token (Authorization header only),
    revocation checked. Raises what ``jwt_required`` raises, answered by the
    same handlers."""
    return _claims("access", "headers")


def refresh_claims(location: str) -> dict:
    """The claims of the refresh token at ``location`` (``headers``, ``json``
    or ``cookies``, with the cookie's CSRF check), revocation checked.
    Raises what ``jwt_required(refresh=True)`` raises."""
    return _claims("refresh", location)


def _claims(token_type: str, location: str):
    match = BEARER.fullmatch(request.headers.get("Authorization", "")) if location == "headers" else None
    claims = match and current_app.extensions[EXTENSION].claims(match[1], token_type)
    if not claims:
        # The general path: it accepts what this one does not read, and
        # refuses with its own answer.
        claims, _, _ = _decode_jwt_from_request(location, fresh=False, refresh=token_type == "refresh")
    elif revocation.is_revoked(claims):
        raise errors.TokenRevoked()
    # The signed-in user, for the request's events (tokens.signed_in_user_id)
    # and its log line (authapi.logs).
    g.token_user_id = g.log_user_id = int(claims["sub"])
    return claims
