"""Password hashing and policy, and the JWT callbacks."""

import gzip
import re
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app
from flask_jwt_extended.exceptions import JWTDecodeError

from . import errors, keys, revocation
from .extensions import db, jwt
from .models import ROLES, User

COMMON_PASSWORDS_FILE = Path(__file__).parent / "data" / "common-passwords.txt.gz"
PASSWORD_MAX_LENGTH = 256

# ---------------------------------------------------------------- passwords


def _hasher() -> PasswordHasher:
    state = current_app.extensions.setdefault("authapi_hasher", {})
    if "hasher" not in state:
        config = current_app.config
        params = {
            "time_cost": config["ARGON2_TIME_COST"],
            "memory_cost": config["ARGON2_MEMORY_COST"],
            "parallelism": config["ARGON2_PARALLELISM"],
        }
        hasher = PasswordHasher(**{k: v for k, v in params.items() if v is not None})
        state["hasher"] = hasher
        # Unknown users are verified against this, so a login costs the same
        # whether or not the account exists.
        state["dummy_hash"] = hasher.hash("authapi-dummy-password")
    return state["hasher"]


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password; with no hash, burn the same time and answer False."""
    hasher = _hasher()
    if password_hash is None:
        password_hash = current_app.extensions["authapi_hasher"]["dummy_hash"]
        known = False
    else:
        known = True
    try:
        hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return known


def needs_rehash(password_hash: str) -> bool:
    return _hasher().check_needs_rehash(password_hash)


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    with gzip.open(COMMON_PASSWORDS_FILE, "rt", encoding="utf-8") as fh:
        return frozenset(line.strip() for line in fh if line.strip())


def password_problems(password: str, *, username: str | None = None, email: str | None = None):
    """The reasons a password breaks the policy of API.md §2 (empty if none)."""
    problems = []
    min_length = current_app.config["PASSWORD_MIN_LENGTH"]
    if len(password) < min_length:
        problems.append(f"Must be at least {min_length} characters.")
    if len(password) > PASSWORD_MAX_LENGTH:
        problems.append(f"Must be at most {PASSWORD_MAX_LENGTH} characters.")
    lowered = password.lower()
    if lowered in common_passwords():
        problems.append("This password is too common.")
    if username and username.lower() in lowered:
        problems.append("Must not contain the username.")
    local_part = email.rsplit("@", 1)[0].lower() if email else ""
    # A local part shorter than a username's minimum ("a@example.com") would
    # forbid nearly every password; the README says so.
    if len(local_part) >= 3 and local_part in lowered:
        problems.append("Must not contain the email address.")
    return problems


# ---------------------------------------------------------------- JWT callbacks

MAX_ID = 2**31 - 1
UUID_PATTERN = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")

REQUIRED_CLAIMS = {
    "access": {"sub", "jti", "type", "iat", "nbf", "exp", "role", "sid"},
    "refresh": {"sub", "jti", "type", "iat", "exp", "sid"},
}


def _check_claims(claims: dict) -> None:
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


@jwt.decode_key_loader
def decode_key(header, unverified_claims):
    # flask-jwt-extended defaults a missing "type" to access and a missing jti to
    # None; the contract calls any missing claim invalid, so check the raw ones
    # here, before the signature check (a forged token fails either way).
    _check_claims(unverified_claims)
    return keys.verification_key(header)


@jwt.encode_key_loader
def encode_key(identity):
    return keys.signing_key()


@jwt.additional_headers_loader
def token_headers(identity) -> dict:
    # The kid names the key in /.well-known/jwks.json that verifies the token.
    return keys.token_headers()


@jwt.token_in_blocklist_loader
def token_in_blocklist(header, claims) -> bool:
    return revocation.is_revoked(claims)


@jwt.user_lookup_loader
def load_user(header, claims):
    user = db.session.get(User, int(claims["sub"]))
    if user is None or not user.is_active:
        return None
    # A role change revokes tokens; this also refuses any token whose role
    # claim disagrees with the database, should a revocation ever be missed.
    if claims["type"] == "access" and claims["role"] != user.role:
        return None
    return user


def _respond(error_class):
    return errors.handle_api_error(error_class())


jwt.user_lookup_error_loader(lambda header, claims: _respond(errors.TokenRevoked))
jwt.revoked_token_loader(lambda header, claims: _respond(errors.TokenRevoked))
jwt.expired_token_loader(lambda header, claims: _respond(errors.TokenExpired))
jwt.invalid_token_loader(lambda reason: _respond(errors.TokenInvalid))
jwt.token_verification_failed_loader(lambda header, claims: _respond(errors.TokenInvalid))
jwt.unauthorized_loader(lambda reason: _respond(errors.Unauthorized))
