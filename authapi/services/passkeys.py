"""Passkeys (API.md §9): WebAuthn registration for a signed-in user,
discoverable-credential login with no username, list and delete.

Every ceremony check is py_webauthn's (options, client data, RP ID hash,
flags, attestation, signature, counter); this module decides only which
challenge, key and user a check runs against, and what its answer changes.
The relying party's settings and challenges are authapi.relying_party.
"""

import hmac

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
    generate_user_handle,
    options_to_json_dict,
    parse_authentication_credential_json,
    parse_registration_credential_json,
)
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from .. import errors, metrics, relying_party
from ..extensions import db
from ..models import Passkey, User, utcnow
from ..tokens import PASSKEY_AMR
from . import devices, events, sessions

DEFAULT_NAME = "Passkey"

MALFORMED = "Send the RegistrationResponseJSON of navigator.credentials.create() (credential.toJSON())."
CHALLENGE_REFUSED = "The challenge is unknown, spent, expired or not yours: ask for new options."
NOT_VERIFIED = "The credential could not be verified."
ALREADY_REGISTERED = "This passkey is already registered."
LOGIN_REFUSED = "The passkey was not accepted."


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
        rp_id=relying_party.rp_id(),
        rp_name=current_app.config["WEBAUTHN_RP_NAME"],
        user_id=_user_handle(user),
        user_name=user.email,
        user_display_name=user.full_name or user.username,
        timeout=relying_party.CHALLENGE_TTL * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[_descriptor(passkey) for passkey in list_passkeys(user)],
        supported_pub_key_algs=relying_party.ALGORITHMS,
    )
    relying_party.issue_challenge(options.challenge, relying_party.REGISTER, user.id)
    return options_to_json_dict(options)


def _refuse_registration(message: str):
    db.session.rollback()
    return errors.ValidationFailed(details={"credential": [message]})


def register_passkey(user: User, credential: dict, name: str | None = None) -> Passkey:
    """Verify a RegistrationResponseJSON against a registration challenge of
    ``user`` and store the passkey. Raises ValidationFailed naming
    ``credential`` (malformed, challenge refused, not verified, already
    registered); the store's errors (503)."""
    parsed = relying_party.checked(parse_registration_credential_json, json_val=credential)
    if parsed is None:
        raise _refuse_registration(MALFORMED)
    challenge = relying_party.take_challenge(parsed.response.client_data_json, relying_party.REGISTER, user.id)
    if challenge is None:
        raise _refuse_registration(CHALLENGE_REFUSED)
    verified = relying_party.verified(
        verify_registration_response, parsed, challenge, supported_pub_key_algs=relying_party.ALGORITHMS,
    )
    if verified is None or not relying_party.credential_id_fits(verified.credential_id):
        raise _refuse_registration(NOT_VERIFIED)
    if _find(verified.credential_id) is not None:
        raise _refuse_registration(ALREADY_REGISTERED)
    passkey = Passkey(
        user_id=user.id,
        credential_id=verified.credential_id,
        public_key=verified.credential_public_key,
        sign_count=verified.sign_count,
        # Each once: a client repeating one must not overflow the column.
        transports=" ".join(dict.fromkeys(transport.value for transport in parsed.response.transports or ())),
        backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
        backed_up=verified.credential_backed_up,
        name=name or DEFAULT_NAME,
    )
    db.session.add(passkey)
    _record_passkey("passkey.added", passkey)
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


def _find(credential_id: bytes) -> Passkey | None:
    if not relying_party.credential_id_fits(credential_id):
        return None
    return db.session.scalar(select(Passkey).where(Passkey.credential_id == credential_id))


def delete_passkey(user: User, passkey_id: str) -> None:
    """Delete one of the user's passkeys (its tokens live on). Raises
    NotFound for an unknown or another user's passkey."""
    passkey = _find(relying_party.credential_id_from_text(passkey_id))
    if passkey is None or passkey.user_id != user.id:
        raise errors.NotFound("Passkey not found.")
    db.session.delete(passkey)
    _record_passkey("passkey.removed", passkey)
    db.session.commit()
    current_app.logger.info("passkey removed", extra={"event": "passkey_removed", "user_id": user.id})


# ---------------------------------------------------------------- login


def login_options() -> dict:
    """Request options (PublicKeyCredentialRequestOptionsJSON) for a login
    with a discoverable credential: no allowCredentials, so the browser
    offers whichever passkey of this site the user picks. Raises the store's
    errors (503)."""
    options = generate_authentication_options(
        rp_id=relying_party.rp_id(),
        timeout=relying_party.CHALLENGE_TTL * 1000,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    relying_party.issue_challenge(options.challenge, relying_party.LOGIN)
    options.allow_credentials = None  # absent, rather than an empty list
    return options_to_json_dict(options)


def _owner_handle_matches(passkey: Passkey, user_handle: bytes | None) -> bool:
    # The authenticator returns the user handle it stored at registration:
    # it must be the owner's (WebAuthn Level 3, §7.2 step 6).
    stored = passkey.user.passkey_user_handle
    return bool(user_handle and stored) and hmac.compare_digest(user_handle, stored)


def _record_passkey(event_type: str, passkey: Passkey) -> None:
    events.record(event_type, user_id=passkey.user_id, data={
        "passkey_id": relying_party.credential_id_text(passkey.credential_id), "name": passkey.name,
    })


def _refuse_login(user_id: int | None, reason: str = "invalid_credentials", error=None):
    """Record the refused login on its own (API.md §10) and return the
    refusal to raise: InvalidCredentials unless ``error`` says otherwise."""
    current_app.logger.info("passkey login failed", extra={"event": "login_failed", "user_id": user_id})
    events.record_alone("login.failed", user_id=user_id, data={"reason": reason})
    return error or errors.InvalidCredentials(LOGIN_REFUSED)


@metrics.count_login
def login_with_passkey(credential: dict, user_agent: str | None, ip: str | None) -> dict:
    """Verify an AuthenticationResponseJSON against a login challenge and
    start a session (``amr`` hwk user mfa: no TOTP step); the pair carries a
    new device token, as after any login. Raises InvalidCredentials alike for
    a malformed credential, a refused challenge, an unknown passkey, a user
    handle not the owner's, a failed check (origin, RP ID, flags, signature,
    counter), a deactivated user; EmailNotVerified when REQUIRE_VERIFIED_EMAIL
    holds it back."""
    parsed = relying_party.checked(parse_authentication_credential_json, json_val=credential)
    challenge = parsed and relying_party.take_challenge(parsed.response.client_data_json, relying_party.LOGIN)
    passkey = challenge and _find(parsed.raw_id)
    if not passkey or not _owner_handle_matches(passkey, parsed.response.user_handle):
        raise _refuse_login(passkey.user_id if passkey else None)
    verified = relying_party.verified(
        verify_authentication_response, parsed, challenge,
        credential_public_key=passkey.public_key, credential_current_sign_count=passkey.sign_count,
    )
    user = passkey.user
    if verified is None:
        raise _refuse_login(user.id)
    if not user.is_active:
        raise _refuse_login(user.id, "inactive")
    # Only after the proof, as after the right password.
    if current_app.config["REQUIRE_VERIFIED_EMAIL"] and not user.is_verified:
        raise _refuse_login(user.id, "email_not_verified", errors.EmailNotVerified())
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
        raise _refuse_login(user.id)
    login_session = sessions.start_session(user, user_agent, ip, PASSKEY_AMR)
    device_token = devices.issue(user)
    events.record("login.succeeded", user_id=user.id, actor_id=user.id,
                  data={"method": "passkey", "session_id": login_session.id})
    db.session.commit()
    current_app.logger.info("passkey login", extra={"event": "login", "user_id": user.id})
    return {**sessions.issue_for(user, login_session), "device_token": device_token}
