"""The WebAuthn relying party (API.md §9): its settings, its challenges in
the shared store, and py_webauthn's checks run so that hostile input is a
refusal. The passkey ceremonies built on these are services/passkeys.py.

A challenge lives in the shared store (so any worker or host can finish a
ceremony another began) under the SHA-256 of its bytes, for
``CHALLENGE_TTL`` seconds, with the ceremony it was issued for and, for a
registration, the user. The challenge a client presents is read from its
client data and taken from the store in one atomic step before any other
check: any attempt spends it, successful or not, and of two racing attempts
one gets it. One key per challenge, so it is one hash slot on a Cluster.
"""

import hashlib
import json
import re
import time

from flask import current_app
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url, parse_client_data_json
from webauthn.helpers.cose import COSEAlgorithmIdentifier

from .extensions import store

CHALLENGE_TTL = 300
REGISTER, LOGIN = "register", "login"
# API.md §9: ES256, EdDSA and RS256, the ones authenticators use.
ALGORITHMS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
DEFAULT_PORTS = {"http": "80", "https": "443"}
# WebAuthn Level 3: authenticators make credential ids of at least 16 bytes
# (§6.1), a relying party takes at most 1023 (§7.1 step 24). In base64url,
# 22 to 1364 characters: so /auth/passkeys/login and /register can never be
# read as a passkey's id.
MIN_CREDENTIAL_ID_BYTES, MAX_CREDENTIAL_ID_BYTES = 16, 1023
ID_MIN_LENGTH = 22
BASE64URL = re.compile(r"[A-Za-z0-9_-]{22,1364}")


def now() -> float:
    """The clock challenges expire by (tests replace it)."""
    return time.time()


# ---------------------------------------------------------------- settings


def rp_id() -> str:
    return current_app.config["WEBAUTHN_RP_ID"].lower()


def expected_origins() -> list[str]:
    """WEBAUTHN_ORIGINS (default ``https://`` + the RP ID) as a browser
    writes an origin into the client data: lower case, no default port.
    py_webauthn compares them as strings."""
    configured = current_app.config["WEBAUTHN_ORIGINS"] or [f"https://{rp_id()}"]
    origins = []
    for origin in configured:
        # config.checks has made it scheme://host[:port]
        scheme, _, authority = origin.lower().partition("://")
        host, _, port = authority.partition(":")
        origins.append(origin.lower() if port and port != DEFAULT_PORTS[scheme] else f"{scheme}://{host}")
    return origins


def credential_id_text(credential_id: bytes) -> str:
    """A passkey's ``id`` in the API: its credential id in base64url, as the
    browser's ``PublicKeyCredential.id`` shows it."""
    return bytes_to_base64url(credential_id)


def credential_id_from_text(text: str) -> bytes:
    """The credential id a passkey ``id`` names; empty unless ``text`` is the
    canonical base64url of one (no padding, no stray bits)."""
    if not BASE64URL.fullmatch(text):
        return b""
    try:
        credential_id = base64url_to_bytes(text)
    except ValueError:  # a length no base64 has (4n + 1 characters)
        return b""
    return credential_id if bytes_to_base64url(credential_id) == text else b""


# ---------------------------------------------------------------- challenges and checks


def challenge_key(challenge: bytes) -> str:
    return f"authapi:passkey:challenge:{hashlib.sha256(challenge).hexdigest()}"


def issue_challenge(challenge: bytes, ceremony: str, user_id: int | None = None) -> None:
    payload = {"ceremony": ceremony, "user": user_id, "exp": now() + CHALLENGE_TTL}
    store.set_many([(challenge_key(challenge), json.dumps(payload), CHALLENGE_TTL)])


def take_challenge(client_data_json: bytes, ceremony: str, user_id: int | None = None) -> bytes | None:
    """The challenge the client data presents, spent now whatever the answer;
    None unless it was issued for ``ceremony`` (to ``user_id``) and is alive."""
    client_data = checked(parse_client_data_json, val=client_data_json)
    if client_data is None:
        return None
    raw = store.take(challenge_key(client_data.challenge))
    payload = json.loads(raw) if raw else None
    if payload is None or payload["exp"] <= now() or (payload["ceremony"], payload["user"]) != (ceremony, user_id):
        return None
    return client_data.challenge


def verified(check, credential, challenge: bytes, **arguments):
    """py_webauthn's ``verify_registration_response`` or
    ``verify_authentication_response`` held to this relying party (its RP ID,
    its origins, user verification required) and to ``challenge``; None when
    it refuses (``checked``)."""
    return checked(check, credential=credential, expected_challenge=challenge, expected_rp_id=rp_id(),
                   expected_origin=expected_origins(), require_user_verification=True, **arguments)


def credential_id_fits(credential_id: bytes) -> bool:
    return MIN_CREDENTIAL_ID_BYTES <= len(credential_id) <= MAX_CREDENTIAL_ID_BYTES


def checked(check, **arguments):
    """One of py_webauthn's parsers or checks; None when it refuses. Hostile
    input makes it raise anything from its own errors to cbor2's, binascii's,
    KeyError and IndexError: each is the client's refusal, never a 500."""
    try:
        return check(**arguments)
    except Exception as exc:  # noqa: BLE001 (see above)
        current_app.logger.info("passkey check refused: %s: %.200s", type(exc).__name__, exc,
                                extra={"event": "passkey_refused"})
        return None
