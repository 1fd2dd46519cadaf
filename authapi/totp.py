"""The second factor's primitives (API.md §8): TOTP codes (pyotp, RFC 6238),
the secret's encryption at rest (MultiFernet over MFA_ENCRYPTION_KEYS), the
provisioning URI and its QR code (segno), and recovery codes. No database,
no requests: services/mfa.py decides what is accepted and when.
"""

import base64
import hmac
import io
import secrets
import time

import pyotp
import segno
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from . import errors
from .digests import digest

PERIOD = 30
DIGITS = 6
# The codes of the previous, current and next period: an authenticator app's
# clock may be off by a little, and a code typed at the end of its period
# arrives in the next.
WINDOW = (-1, 0, 1)
RECOVERY_CODE_COUNT = 10
# 16 base32 characters: 80 random bits per code, out of reach of a search even
# against a fast hash, so SHA-256 is enough (no argon2 work at the second step).
RECOVERY_CODE_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
RECOVERY_CODE_LENGTH = 16
HKDF_INFO = b"authapi MFA_ENCRYPTION_KEYS default"


def now() -> float:
    """The clock TOTP codes are computed against (tests replace it)."""
    return time.time()


# ---------------------------------------------------------------- secrets at rest


def derived_key(secret_key: str) -> bytes:
    """The Fernet key used when MFA_ENCRYPTION_KEYS is empty: HKDF-SHA256 of
    SECRET_KEY, so it is stable wherever SECRET_KEY is (production requires it)."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(key)


def _fernet() -> MultiFernet:
    config = current_app.config
    keys = config["MFA_ENCRYPTION_KEYS"] or [derived_key(config["SECRET_KEY"])]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(secret: str) -> str:
    """The TOTP secret as stored: a Fernet token under the first key."""
    return _fernet().encrypt(secret.encode()).decode()


def decrypt(stored: str) -> str:
    """The TOTP secret of a stored Fernet token, under any configured key.
    Raises ServiceUnavailable when no configured key opens it: an operator
    removed a key too early (docs/two-factor.md), which no client can fix."""
    try:
        return _fernet().decrypt(stored.encode()).decode()
    except InvalidToken:
        current_app.logger.error("a TOTP secret cannot be decrypted with MFA_ENCRYPTION_KEYS",
                                 extra={"event": "mfa_key_missing"})
        raise errors.ServiceUnavailable() from None


def reencrypt(stored: str) -> str:
    """The same secret under the first key (key rotation). Raises
    ServiceUnavailable, as ``decrypt``, when no configured key opens it."""
    try:
        return _fernet().rotate(stored.encode()).decode()
    except InvalidToken:
        raise errors.ServiceUnavailable(
            "A stored TOTP secret opens under none of MFA_ENCRYPTION_KEYS; nothing was changed."
        ) from None


# ---------------------------------------------------------------- TOTP


def new_secret() -> str:
    """A random secret: 160 bits (RFC 4226's recommendation), base32 without padding."""
    return pyotp.random_base32(32)


def normalise_code(code: str) -> str:
    """Spaces and dashes out, lower case: how codes are compared."""
    return "".join(code.split()).replace("-", "").lower()


def is_totp_code(normalised: str) -> bool:
    return len(normalised) == DIGITS and normalised.isascii() and normalised.isdigit()


def matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step (RFC 6238's T) within ``WINDOW`` of ``at`` whose code is
    ``code``, or None. Every step is compared, in constant time."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    moment = now() if at is None else at
    current = int(moment // PERIOD)
    found = None
    for offset in WINDOW:
        if hmac.compare_digest(totp.generate_otp(current + offset), code):
            found = current + offset
    return found


def provisioning_uri(secret: str, email: str) -> str:
    issuer = current_app.config["MFA_ISSUER"]
    return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).provisioning_uri(name=email, issuer_name=issuer)


def qr_svg(uri: str) -> str:
    """``uri`` as a QR code, an SVG document (no XML declaration), for a page to show."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", xmldecl=False, scale=4)
    return buffer.getvalue().decode()


# ---------------------------------------------------------------- recovery codes


def new_recovery_codes() -> list[str]:
    """Ten fresh codes, shown once, as ``xxxx-xxxx-xxxx-xxxx``."""
    codes = []
    for _ in range(RECOVERY_CODE_COUNT):
        raw = "".join(secrets.choice(RECOVERY_CODE_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        codes.append("-".join(raw[i:i + 4] for i in range(0, RECOVERY_CODE_LENGTH, 4)))
    return codes


def recovery_code_hash(code: str) -> str:
    """What is stored of a recovery code: SHA-256 of its normalised form."""
    return digest(normalise_code(code))
