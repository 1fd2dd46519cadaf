"""Passkeys (API.md §9): WebAuthn registration for a signed-in user,
discoverable-credential login with no username, list and delete.

Every ceremony check is py_webauthn's (options, client data, RP ID hash,
flags, attestation, signature, counter); this module decides only which
challenge, key and user a check runs against, and what its answer changes.

A challenge lives in the shared store (so any worker or host can finish a
ceremony another began) under the SHA-256 of its bytes, for
``CHALLENGE_TTL`` seconds, with the ceremony it was issued for and, for a
registration, the user. The challenge a client presents is read from its
client data and taken from the store in one atomic step before any other
check: any attempt spends it, successful or not, and of two racing attempts
one gets it. One key per challenge, so it is one hash slot on a Cluster.
"""

import hashlib
import hmac
import json
import re
import time
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    generate_user_handle,
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.cose import COSEAlgorithmIdentifier
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from .. import errors, metrics
from ..extensions import db, store
from ..models import Passkey, User, utcnow
from ..tokens import PASSKEY_AMR
from . import devices, sessions

CHALLENGE_TTL = 300
REGISTER, LOGIN = "register", "login"
# API.md §9: ES256, EdDSA and RS256, the ones authenticators use.
ALGORITHMS = [
    COSEAlgorithmIdentifier.ECDSA_SHA_256,
    COSEAlgorithmIdentifier.EDDSA,
    COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
]
MAX_CREDENTIAL_ID_BYTES = 1023  # WebAuthn Level 3, §7.1 step 24
BASE64URL = re.compile(r"[A-Za-z0-9_-]{1,1364}")
DEFAULT_NAME = "Passkey"
DEFAULT_PORTS = {"http": "80", "https": "443"}

MALFORMED = "Send the RegistrationResponseJSON of navigator.credentials.create() (credential.toJSON())."
CHALLENGE_REFUSED = "The challenge is unknown, spent, expired or not yours: ask for new options."
NOT_VERIFIED = "The credential could not be verified."
ALREADY_REGISTERED = "This passkey is already registered."
LOGIN_REFUSED = "The passkey was not accepted."


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
        parts = urlsplit(origin.lower())  # config.checks has made it scheme://host[:port]
        port = parts.port and str(parts.port)
        suffix = f":{port}" if port and port != DEFAULT_PORTS[parts.scheme] else ""
        origins.append(f"{parts.scheme}://{parts.hostname}{suffix}")
    return origins


# ---------------------------------------------------------------- challenges and checks


def _challenge_key(challenge: bytes) -> str:
    return f"authapi:passkey:challenge:{hashlib.sha256(challenge).hexdigest()}"


def _issue_challenge(challenge: bytes, ceremony: str, user_id: int | None = None) -> None:
    payload = {"ceremony": ceremony, "user": user_id, "exp": now() + CHALLENGE_TTL}
    store.set_many([(_challenge_key(challenge), json.dumps(payload), CHALLENGE_TTL)])


def _take_challenge(client_data_json: bytes, ceremony: str, user_id: int | None = None) -> bytes | None:
    """The challenge the client data presents, spent now whatever the answer;
    None unless it was issued for ``ceremony`` (to ``user_id``) and is alive."""
    client_data = _checked(parse_client_data_json, val=client_data_json)
    if client_data is None:
        return None
    raw = store.take(_challenge_key(client_data.challenge))
    payload = json.loads(raw) if raw else None
    if payload is None or payload["exp"] <= now() or (payload["ceremony"], payload["user"]) != (ceremony, user_id):
        return None
    return client_data.challenge


def _checked(check, **arguments):
    """One of py_webauthn's parsers or checks; None when it refuses. Hostile
    input makes it raise anything from its own errors to cbor2's, binascii's,
    KeyError and IndexError: each is the client's refusal, never a 500."""
    try:
        return check(**arguments)
    except Exception as exc:  # noqa: BLE001 (see above)
        current_app.logger.info("passkey check refused: %s: %.200s", type(exc).__name__, exc,
                                extra={"event": "passkey_refused"})
        return None


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = [AuthenticatorTransport(value) for value in passkey.transports.split()]
    return PublicKeyCredentialDescriptor(id=passkey.credential_id, transports=transports or None)


# ---------------------------------------------------------------- registration


def _user_handle(user: User) -> bytes:
    """The user's WebAuthn user handle, made (and committed) at first use.
    Made once even by concurrent requests, or a passkey would be created
    under a handle the account no longer has."""
    if user.passkey_user_handle is None:
        db.session.execute(
            update(User)
            .where(User.id == user.id, User.passkey_user_handle.is_(None))
            .values(passkey_user_handle=generate_user_handle())
            .execution_options(synchronize_session=False)
        )
        db.session.commit()
        db.session.refresh(user, ["passkey_user_handle"])
    return user.passkey_user_handle


def registration_options(user: User) -> dict:
    """Creation options (PublicKeyCredentialCreationOptionsJSON) for a new
    passkey of ``user``; their challenge is stored for this user. Raises the
    store's errors (503)."""
    options = generate_registration_options(
        rp_id=rp_id(),
        rp_name=current_app.config["WEBAUTHN_RP_NAME"],
        user_id=_user_handle(user),
        user_name=user.email,
        user_display_name=user.full_name or user.username,
        timeout=CHALLENGE_TTL * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[_descriptor(passkey) for passkey in list_passkeys(user)],
        supported_pub_key_algs=ALGORITHMS,
    )
    _issue_challenge(options.challenge, REGISTER, user.id)
    return options_to_json_dict(options)


def _refuse_registration(message: str):
    db.session.rollback()
    return errors.ValidationFailed(details={"credential": [message]})


def register_passkey(user: User, credential: dict, name: str | None = None) -> Passkey:
    """Verify a RegistrationResponseJSON against a registration challenge of
    ``user`` and store the passkey. Raises ValidationFailed naming
    ``credential`` (malformed, challenge refused, not verified, already
    registered); the store's errors (503)."""
    parsed = _checked(parse_registration_credential_json, json_val=credential)
    if parsed is None:
        raise _refuse_registration(MALFORMED)
    challenge = _take_challenge(parsed.response.client_data_json, REGISTER, user.id)
    if challenge is None:
        raise _refuse_registration(CHALLENGE_REFUSED)
    verified = _checked(
        verify_registration_response,
        credential=parsed,
        expected_challenge=challenge,
        expected_rp_id=rp_id(),
        expected_origin=expected_origins(),
        require_user_verification=True,
        supported_pub_key_algs=ALGORITHMS,
    )
    if verified is None or len(verified.credential_id) > MAX_CREDENTIAL_ID_BYTES:
        raise _refuse_registration(NOT_VERIFIED)
    if _find(verified.credential_id) is not None:
        raise _refuse_registration(ALREADY_REGISTERED)
    passkey = Passkey(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        transports=" ".join(transport.value for transport in parsed.response.transports or ()),
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
        name=name or DEFAULT_NAME,
    )
    db.session.add(passkey)
    try:
        db.session.commit()
    except IntegrityError:  # the same credential registered concurrently
        raise _refuse_registration(ALREADY_REGISTERED) from None
    current_app.logger.info("passkey added", extra={"event": "passkey_added", "user_id": user.id})
    return passkey


# ---------------------------------------------------------------- list and delete


def list_passkeys(user: User) -> list[Passkey]:
    """The user's passkeys, oldest first."""
    return list(db.session.scalars(
        select(Passkey).where(Passkey.user_id == user.id).order_by(Passkey.created_at, Passkey.id)
    ))


def count_passkeys(user: User) -> int:
    return db.session.scalar(select(func.count(Passkey.id)).where(Passkey.user_id == user.id))


def public_id(passkey: Passkey) -> str:
    """A passkey's ``id`` in the API: its credential id in base64url, as the
    browser's ``PublicKeyCredential.id`` shows it."""
    return bytes_to_base64url(passkey.credential_id)


def _find(credential_id: bytes) -> Passkey | None:
    if not credential_id or len(credential_id) > MAX_CREDENTIAL_ID_BYTES:
        return None
    return db.session.scalar(select(Passkey).where(Passkey.credential_id == credential_id))


def delete_passkey(user: User, passkey_id: str) -> None:
    """Delete one of the user's passkeys (its tokens live on). Raises
    NotFound for an unknown or another user's passkey."""
    # Only the canonical base64url of a credential id names it.
    credential_id = base64url_to_bytes(passkey_id) if BASE64URL.fullmatch(passkey_id) else b""
    passkey = _find(credential_id) if bytes_to_base64url(credential_id) == passkey_id else None
    if passkey is None or passkey.user_id != user.id:
        raise errors.NotFound("Passkey not found.")
    db.session.delete(passkey)
    db.session.commit()
    current_app.logger.info("passkey removed", extra={"event": "passkey_removed", "user_id": user.id})


# ---------------------------------------------------------------- login


def login_options() -> dict:
    """Request options (PublicKeyCredentialRequestOptionsJSON) for a login
    with a discoverable credential: no allowCredentials, so the browser
    offers whichever passkey of this site the user picks. Raises the store's
    errors (503)."""
    options = generate_authentication_options(
        rp_id=rp_id(),
        timeout=CHALLENGE_TTL * 1000,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    _issue_challenge(options.challenge, LOGIN)
    options.allow_credentials = None  # absent, rather than an empty list
    return options_to_json_dict(options)


def _owner_handle_matches(passkey: Passkey, user_handle: bytes | None) -> bool:
    # The authenticator returns the user handle it stored at registration:
    # it must be the owner's (WebAuthn Level 3, §7.2 step 6).
    stored = passkey.user.passkey_user_handle
    return bool(user_handle and stored) and hmac.compare_digest(user_handle, stored)


@metrics.count_login
def login_with_passkey(credential: dict, user_agent: str | None, ip: str | None) -> dict:
    """Verify an AuthenticationResponseJSON against a login challenge and
    start a session (``amr`` hwk user mfa: no TOTP step); the pair carries a
    new device token, as after any login. Raises InvalidCredentials alike for
    a malformed credential, a refused challenge, an unknown passkey, a user
    handle not the owner's, a failed check (origin, RP ID, flags, signature,
    counter), a deactivated user; EmailNotVerified when REQUIRE_VERIFIED_EMAIL
    holds it back."""
    parsed = _checked(parse_authentication_credential_json, json_val=credential)
    challenge = parsed and _take_challenge(parsed.response.client_data_json, LOGIN)
    passkey = challenge and _find(parsed.raw_id)
    if not passkey or not _owner_handle_matches(passkey, parsed.response.user_handle):
        raise errors.InvalidCredentials(LOGIN_REFUSED)
    verified = _checked(
        verify_authentication_response,
        credential=parsed,
        expected_challenge=challenge,
        expected_rp_id=rp_id(),
        expected_origin=expected_origins(),
        credential_public_key=passkey.public_key,
        credential_current_sign_count=passkey.sign_count,
        require_user_verification=True,
    )
    user = passkey.user
    if verified is None or not user.is_active:
        current_app.logger.info("passkey login failed", extra={"event": "login_failed", "user_id": user.id})
        raise errors.InvalidCredentials(LOGIN_REFUSED)
    # Only after the proof, as after the right password.
    if current_app.config["REQUIRE_VERIFIED_EMAIL"] and not user.is_verified:
        raise errors.EmailNotVerified()
    moment = utcnow()
    # As a password login's: the user's row locked (first, as an account
    # deletion locks it before its passkeys) until the session is committed,
    # so a deactivation that committed first makes this match nothing.
    active = db.session.execute(
        update(User)
        .where(User.id == user.id, User.is_active.is_(True))
        .values(last_login_at=moment)
        .execution_options(synchronize_session=False)
    ).rowcount
    # Compare-and-swap on the counter checked: of two logins racing with it,
    # one moves it on and the other is refused as a regression.
    used = db.session.execute(
        update(Passkey)
        .where(Passkey.id == passkey.id, Passkey.sign_count == passkey.sign_count)
        .values(sign_count=verified.new_sign_count, backed_up=verified.credential_backed_up, last_used_at=moment)
        .execution_options(synchronize_session=False)
    ).rowcount
    if used != 1 or active != 1:
        db.session.rollback()
        raise errors.InvalidCredentials(LOGIN_REFUSED)
    login_session = sessions.start_session(user, user_agent, ip, PASSKEY_AMR)
    device_token = devices.issue(user)
    db.session.commit()
    current_app.logger.info("passkey login", extra={"event": "login", "user_id": user.id})
    return {**sessions.issue_for(user, login_session), "device_token": device_token}
