"""JWTs: the pairs a login issues, the claims every token must carry, and the
flask-jwt-extended callbacks that check them (registered by ``init_app``).

Whether a well-formed token is still honoured is revocation's rule
(``authapi.revocation``); this module only asks it.
"""

import re
from typing import NamedTuple

from flask import current_app, g, has_request_context
from flask_jwt_extended import create_access_token, create_refresh_token, get_jwt_identity
from flask_jwt_extended.exceptions import JWTDecodeError

from . import errors, keys, revocation
from .extensions import db, jwt
from .models import ROLES, User

MAX_ID = 2**31 - 1
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")

REQUIRED_CLAIMS = {
    "access": {"sub", "jti", "type", "iat", "nbf", "exp", "role", "sid", "amr"},
    "refresh": {"sub", "jti", "type", "iat", "exp", "sid"},
}


# RFC 8176 authentication methods of a login (API.md §2): a password alone,
# a password and a one-time code (TOTP or recovery code) as two factors, or
# a passkey: a hardware-bound key unlocked by the user (a PIN or biometric,
# WebAuthn user verification), two factors in one gesture.
PASSWORD_AMR = ("pwd",)
MFA_AMR = ("pwd", "otp", "mfa")
PASSKEY_AMR = ("hwk", "user", "mfa")
AMR_METHODS = {"pwd", "otp", "mfa", "hwk", "user"}


def amr_of(login_session) -> list[str]:
    """The ``amr`` claim of a login session's tokens (stored space-separated)."""
    return login_session.amr.split()


class Identity(NamedTuple):
    """What a token pair says of its user, when no User is loaded (a refresh
    reads the role in its rotation)."""

    id: int
    role: str


def issue_token_pair(user: User | Identity, session_id: str, refresh_jti: str, amr) -> dict:
    """An access and a refresh token for the login session ``session_id``,
    whose login was made with the methods ``amr``."""
    identity = str(user.id)
    config = current_app.config
    claims = {"role": user.role, "sid": session_id, "amr": list(amr)}
    return {
        "access_token": create_access_token(identity, additional_claims=claims),
        # Our own jti, so the session row knows which refresh token is current.
        "refresh_token": create_refresh_token(
            identity, additional_claims={"sid": session_id, "jti": refresh_jti}
        ),
        "token_type": "Bearer",
        "expires_in": config["ACCESS_TOKEN_TTL"],
        "refresh_expires_in": config["REFRESH_TOKEN_TTL"],
    }


def signed_in_user_id() -> int | None:
    """The user id of the request's token once it passed every check
    (revocation included), or None: no request, or none with a token."""
    if not has_request_context():
        return None
    try:
        identity = get_jwt_identity()
    except RuntimeError:  # no jwt_required: the hot paths' check, or no token
        return g.get("token_user_id")
    return int(identity) if identity else None


def check_claims(claims: dict) -> None:
    """Raises JWTDecodeError (401 token_invalid) unless every claim the
    token's type needs is there and well-formed."""
    token_type = claims.get("type")
    if not isinstance(token_type, str) or token_type not in REQUIRED_CLAIMS:
        raise JWTDecodeError("Missing or unknown token type")
    missing = REQUIRED_CLAIMS[token_type] - claims.keys()
    if missing:
        raise JWTDecodeError("Missing claim")
    sub = claims["sub"]
    # Checked here so that no database ever sees a value it cannot store or
    # compare (PostgreSQL: 32-bit ids, no NUL in text): a 401, never a 500.
    if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and len(sub) <= 10 and 0 < int(sub) <= MAX_ID):
        raise JWTDecodeError("Invalid subject")
    if not all(isinstance(claims[name], str) and UUID_PATTERN.match(claims[name]) for name in ("sid", "jti")):
        raise JWTDecodeError("Invalid claim")
    if token_type == "access" and not (isinstance(claims["role"], str) and claims["role"] in ROLES):
        raise JWTDecodeError("Invalid role")
    if token_type == "access" and not _valid_amr(claims["amr"]):
        raise JWTDecodeError("Invalid amr")


def _valid_amr(amr) -> bool:
    return (
        isinstance(amr, list) and 0 < len(amr) <= len(AMR_METHODS)
        and all(isinstance(method, str) and method in AMR_METHODS for method in amr)
    )


def decode_key(header, unverified_claims):
    # flask-jwt-extended defaults a missing "type" to access and a missing jti to
    # None; the contract calls any missing claim invalid, so check the raw ones
    # here, before the signature check (a forged token fails either way).
    check_claims(unverified_claims)
    return keys.verification_key(header)


def load_user(header, claims):
    """The token's user, or None (401 token_revoked) when the account refuses it."""
    user = db.session.get(User, int(claims["sub"]))
    return None if revocation.is_revoked_by_account(user, claims) else user


def _respond(error_class):
    return errors.handle_api_error(error_class())


def init_app(app) -> None:
    """Bind flask-jwt-extended to ``app`` and register our callbacks on it.

    The callbacks live on the one ``jwt`` manager; registering them again for
    another app replaces them with the same functions.
    """
    jwt.init_app(app)
    revocation.init_app(app)
    jwt.decode_key_loader(decode_key)
    jwt.encode_key_loader(lambda identity: keys.signing_key())
    # The kid names the key in /.well-known/jwks.json that verifies the token.
    jwt.additional_headers_loader(lambda identity: keys.token_headers())
    jwt.token_in_blocklist_loader(lambda header, claims: revocation.is_revoked(claims))
    jwt.user_lookup_loader(load_user)
    jwt.user_lookup_error_loader(lambda header, claims: _respond(errors.TokenRevoked))
    jwt.revoked_token_loader(lambda header, claims: _respond(errors.TokenRevoked))
    jwt.expired_token_loader(lambda header, claims: _respond(errors.TokenExpired))
    jwt.invalid_token_loader(lambda reason: _respond(errors.TokenInvalid))
    jwt.token_verification_failed_loader(lambda header, claims: _respond(errors.TokenInvalid))
    jwt.unauthorized_loader(lambda reason: _respond(errors.Unauthorized))
