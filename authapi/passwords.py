"""Passwords: hashing with argon2, and the policy of API.md §2.

Every place that sets a password (register, admin and CLI create, CLI
set-password, change, reset) calls ``ensure_password_allowed``; the register
schema also lists ``password_problems`` so that one 422 names every field's
problems at once.

``verify_password`` takes the same time whoever a login names (API.md §7):
an unknown user, an account hashed with older parameters, an inactive one.
"""

import gzip
import statistics
import time
from collections import deque
from functools import lru_cache
from pathlib import Path

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app

from . import errors

COMMON_PASSWORDS_FILE = Path(__file__).parent / "data" / "common-passwords.txt.gz"
PASSWORD_MAX_LENGTH = 256
RECENT_CHECKS = 31  # enough for a stable median, few enough to follow the load

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
        started = time.perf_counter()
        # Unknown users are verified against this, so a login costs the same
        # whether or not the account exists.
        state["dummy_hash"] = hasher.hash("authapi-dummy-password")
        # How long checks at today's parameters take in this process (hashing
        # costs what verifying does): the time every check is brought up to.
        state["recent_checks"] = deque([time.perf_counter() - started], maxlen=RECENT_CHECKS)
        state["hasher"] = hasher
    return state["hasher"]


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """Check a password in the time a check at today's parameters takes
    (API.md §7), whatever the account: none or an unreadable hash (the dummy
    hash is checked, and the answer is False), or a hash of older, cheaper
    parameters, which an inactive or dormant account keeps (only a successful
    login rehashes). argon2's cost is far from linear in its parameters (the
    CPU caches), so the difference is measured, not computed: the median of
    this process's recent checks at today's parameters, less this check's
    own time, is slept. A hash of costlier parameters (lowered since) cannot
    be made cheaper; docs/security.md says so."""
    hasher = _hasher()
    state = current_app.extensions["authapi_hasher"]
    known = _readable(password_hash)
    checked_hash = password_hash if known else state["dummy_hash"]
    started = time.perf_counter()
    matched = _check(hasher, checked_hash, password)
    elapsed = time.perf_counter() - started
    if not known or not hasher.check_needs_rehash(checked_hash):
        state["recent_checks"].append(elapsed)
    else:
        time.sleep(max(0.0, statistics.median(state["recent_checks"]) - elapsed))
    return matched and known


def _readable(password_hash: str | None) -> bool:
    if password_hash is None:
        return False
    try:
        extract_parameters(password_hash)
    except InvalidHashError:
        return False
    return True


def _check(hasher: PasswordHasher, password_hash: str, password: str) -> bool:
    try:
        return hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


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
