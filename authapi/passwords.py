"""Passwords: hashing with argon2, and the policy of API.md §2.

Every place that sets a password (register, admin and CLI create, CLI
set-password, change, reset) calls ``ensure_password_allowed``; the register
schema also lists ``password_problems`` so that one 422 names every field's
problems at once.
"""

import gzip
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app

from . import errors

COMMON_PASSWORDS_FILE = Path(__file__).parent / "data" / "common-passwords.txt.gz"
PASSWORD_MAX_LENGTH = 256

# ---------------------------------------------------------------- hashing


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


# ---------------------------------------------------------------- policy


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


def ensure_password_allowed(
    password: str, *, username: str | None, email: str | None, field: str = "password"
) -> None:
    """Raises ValidationFailed, its details naming ``field``, when ``password``
    breaks the policy for the account of ``username`` and ``email``."""
    problems = password_problems(password, username=username, email=email)
    if problems:
        raise errors.ValidationFailed(details={field: problems})
