"""Accounts: registration, login, profile, password change, deletion."""

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.attributes import set_committed_value

from .. import errors, lockout, metrics, revocation
from ..extensions import db
from ..models import DeviceToken, User, utcnow
from ..passwords import ensure_password_allowed, hash_password, needs_rehash, verify_password
from ..tokens import MFA_AMR, PASSWORD_AMR
from . import devices, mfa, recovery, sessions

INCORRECT_PASSWORD = "Incorrect password."


def find_by_login(login: str) -> User | None:
    """The user whose username or email is ``login``, case-insensitively."""
    lowered = login.lower()
    return db.session.scalar(
        select(User).where(
            or_(func.lower(User.username) == lowered, func.lower(User.email) == lowered)
        )
    )


def check_unique(email: str | None, username: str | None, exclude_id: int | None = None) -> dict:
    """Which of ``email`` and ``username`` another account already uses, as
    error details. A friendly pre-check: the unique indexes are the real guard."""
    details = {}
    for field, column, value in (("email", User.email, email), ("username", User.username, username)):
        if value is None:
            continue
        query = select(User.id).where(func.lower(column) == value.lower())
        if exclude_id is not None:
            query = query.where(User.id != exclude_id)
        if db.session.scalar(query.limit(1)) is not None:
            details[field] = [f"This {field} is already taken."]
    return details


def ensure_unique(email: str | None, username: str | None, exclude_id: int | None = None) -> None:
    """Raises Conflict, naming the field, when another account uses ``email``
    or ``username``."""
    details = check_unique(email, username, exclude_id)
    if details:
        raise errors.Conflict("The email or username is already taken.", details)


def commit_unique(email: str | None, username: str | None, exclude_id: int | None = None):
    """Commit, turning a uniqueness violation (also one lost to a concurrent
    request after our pre-check) into Conflict."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        details = check_unique(email, username, exclude_id) or None
        raise errors.Conflict("The email or username is already taken.", details) from None


def register(email: str, username: str, password: str, full_name: str | None = None) -> User:
    """Create an account. Raises Forbidden when registration is closed,
    ValidationFailed for a password the policy refuses, Conflict when the
    email or username is taken."""
    if not current_app.config["REGISTRATION_OPEN"]:
        raise errors.Forbidden("Registration is closed.")
    user = create_account(email, username, password, full_name)
    current_app.logger.info("user registered", extra={"event": "register", "user_id": user.id})
    return user


def create_account(
    email: str, username: str, password: str, full_name: str | None = None,
    role: str = "user", is_verified: bool = False,
) -> User:
    """Insert an account and, unless it is verified, send the verification
    email. Raises ValidationFailed (``password``) for a password the policy
    refuses, Conflict when the email or username is taken."""
    ensure_password_allowed(password, username=username, email=email)
    ensure_unique(email, username)
    user = User(
        email=email,
        username=username,
        full_name=full_name,
        password_hash=hash_password(password),
        role=role,
        is_verified=is_verified,
    )
    db.session.add(user)
    commit_unique(email, username)
    if not user.is_verified:
        recovery.send_verification_email(user)
    return user


@metrics.count_login
def login(
    username: str, password: str, user_agent: str | None, ip: str | None,
    device_token: str | None = None,
) -> dict:
    """Check credentials and start a session; the pair also carries a device
    token (the one presented, when it was usable, else a new one). Raises
    InvalidCredentials alike for an unknown user, a wrong password and a
    deactivated account; RateLimited while ``username`` is locked out after
    repeated failures, unless a usable device token of the account came with
    the attempt (API.md §7); EmailNotVerified when REQUIRE_VERIFIED_EMAIL holds
    it back; MfaRequired, with the second step's token, when TOTP is on."""
    device = _count_login_attempt(username, device_token)
    user = find_by_login(username)
    if not verify_password(user.password_hash if user else None, password) or not user.is_active:
        user_id = user.id if user else None
        current_app.logger.info("login failed", extra={"event": "login_failed", "user_id": user_id})
        _count_device_failure(device)
        raise errors.InvalidCredentials()
    if device is None:
        lockout.clear_logins(username, user.username, user.email)
    else:
        # Only the device's count: the owner's login from a known device does
        # not give whoever locked the username a fresh set of guesses.
        lockout.clear_device(device.token_hash)
    # Only after the password is right, so this says nothing to a guesser.
    if current_app.config["REQUIRE_VERIFIED_EMAIL"] and not user.is_verified:
        raise errors.EmailNotVerified()
    if user.mfa_enabled:
        # No session yet: POST /auth/login/mfa completes the login (and issues
        # the device token) once a code is right. The hash is brought up to
        # date now, when the password is at hand, so that the second step does
        # no argon2 work and such accounts are re-hashed too.
        _swap_password_hash(user, password)
        db.session.commit()
        mfa.begin_second_step(user)
    _swap_password_hash(user, password, last_login_at=utcnow())
    login_session = sessions.start_session(user, user_agent, ip)
    # The same device token again rather than a new row per login.
    device_token = device_token if device is not None else devices.issue(user)
    db.session.commit()
    current_app.logger.info("login", extra={"event": "login", "user_id": user.id})
    pair = sessions.issue_for(user, login_session)
    return {**pair, "device_token": device_token}


def _swap_password_hash(user: User, password: str, **values) -> None:
    """Store ``values`` and, when its parameters are outdated, a new hash of the
    password just verified against ``user.password_hash``.

    A compare-and-swap on the verified hash: the UPDATE locks the user's row
    (SQLite: the database) until the caller commits. A password change or
    reset that committed first makes it match nothing (InvalidCredentials), and
    one that comes after sees the new session and ends it."""
    verified_hash = user.password_hash
    new_hash = hash_password(password) if needs_rehash(verified_hash) else verified_hash
    if new_hash == verified_hash and not values:
        return
    updated = db.session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == verified_hash)
        .values(password_hash=new_hash, **values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if updated != 1:
        db.session.rollback()
        raise errors.InvalidCredentials()
    # The loaded row must say what is stored (the second step's token binds
    # to it), without marking it changed.
    set_committed_value(user, "password_hash", new_hash)


def _count_login_attempt(login: str, device_token: str | None) -> DeviceToken | None:
    """Count a login attempt before any password work: against the device
    token when it is a usable one of the account ``login`` names, else against
    ``login`` as typed. Returns the device token it was counted against, or None.
    Raises RateLimited.

    Without a usable device token the count comes before the account is looked
    up, so a locked login answers the same whether or not the account exists
    (the device token's look-up is by its hash, whatever ``login`` is).
    """
    device = devices.recognise(device_token, login)
    if device is not None and lockout.count_device_attempt(device.token_hash):
        return device
    lockout.count_login_attempt(login)
    return None


def _count_device_failure(device: DeviceToken | None) -> None:
    """After a failed login with a device token: void it once its failures in
    a row reach ``LOCKOUT_THRESHOLD``, so it cannot skip the lockout again."""
    if device is not None and lockout.device_exhausted(device.token_hash):
        # Its count is left to expire: cleared now, a concurrent guess that
        # looked the token up before the void would be counted from zero.
        devices.void(device)
        current_app.logger.warning(
            "device token voided after repeated failures",
            extra={"event": "device_token_voided", "user_id": device.user_id},
        )


def confirm_password(user: User, password: str | None, field: str) -> None:
    """Check a logged-in user's password, then hold it: counted like logins
    (lockout), so a stolen token cannot be used to guess it; and the user's row
    stays locked (SQLite: the database) until the commit, provided the password
    is still the one just checked. A change or reset committed since the check
    makes the hold match nothing: the password given is no longer the
    account's, so the answer is the 422 the request would have had after it
    (not 409: nothing the client could resolve and retry).
    Raises ValidationFailed naming ``field``, RateLimited."""
    if not password:
        raise errors.ValidationFailed(details={field: ["Your current password is required."]})
    lockout.count_password_check(user.id)
    verified_hash = user.password_hash
    if not verify_password(verified_hash, password):
        raise errors.ValidationFailed(details={field: [INCORRECT_PASSWORD]})
    lockout.clear_password_checks(user.id)
    held = db.session.execute(
        update(User)
        .where(User.id == user.id, User.password_hash == verified_hash)
        .values(password_hash=verified_hash)
        .execution_options(synchronize_session=False)
    ).rowcount
    if held != 1:
        db.session.rollback()
        raise errors.ValidationFailed(details={field: [INCORRECT_PASSWORD]})


def update_profile(user: User, current_password: str | None = None, code: str | None = None, **changes) -> User:
    """Apply ``full_name``, ``username`` and ``email`` changes. A new email needs
    the current password (and, while TOTP is on, a code) and is unverified
    again. Raises ValidationFailed, RateLimited (password or code checks locked
    out), Conflict."""
    new_email = changes.get("email")
    email_changes = new_email is not None and new_email.lower() != user.email.lower()
    if email_changes:
        # Checked first, so the endpoint cannot probe which emails exist.
        confirm_password(user, current_password, "current_password")
        mfa.step_up(user, code)
    ensure_unique(new_email, changes.get("username"), exclude_id=user.id)
    for field in ("full_name", "username", "email"):
        if field in changes:
            setattr(user, field, changes[field])
    if email_changes:
        user.is_verified = False
        # A reset link mailed to the old address must not take the account back.
        recovery.void_tokens(user, recovery.PASSWORD_RESET)
    commit_unique(changes.get("email"), changes.get("username"), exclude_id=user.id)
    if email_changes:
        recovery.send_verification_email(user)
    return user


def change_password(
    user: User, current_password: str, new_password: str, code: str | None = None, user_agent=None, ip=None
) -> dict:
    """Set a new password, end every session and start a new one (its amr
    says whether a code was given). Raises ValidationFailed for a wrong current
    password, a weak new one, or a missing or wrong code while TOTP is on;
    RateLimited while the password or code checks are locked out."""
    # Held through the new password's hashing: a login of this user racing
    # with it waits that long, then fails on the new hash, as it must.
    confirm_password(user, current_password, "current_password")
    ensure_password_allowed(new_password, username=user.username, email=user.email, field="new_password")
    mfa.step_up(user, code)
    recovery.replace_password(user, new_password)
    amr = MFA_AMR if user.mfa_enabled else PASSWORD_AMR
    login_session = sessions.start_session(user, user_agent, ip, amr)
    db.session.commit()
    current_app.logger.info("password changed", extra={"event": "password_change", "user_id": user.id})
    return sessions.issue_for(user, login_session)


def removing_admin(user: User) -> bool:
    """Whether ``user`` counts as an active admin, so changing it may leave none."""
    if user.role != "admin" or not user.is_active:
        return False
    # PostgreSQL: lock the active admins' rows so that two admins demoting or
    # deleting each other at once are serialised (SQLite serialises writers).
    db.session.execute(
        select(User.id).where(User.role == "admin", User.is_active.is_(True)).with_for_update()
    )
    return True


def ensure_an_admin_remains() -> None:
    """Call after changing an active admin: writes the change (inside the
    transaction), and raises Conflict, rolling back, if no active admin is left."""
    db.session.flush()
    admins = db.session.scalar(
        select(func.count(User.id)).where(User.role == "admin", User.is_active.is_(True))
    )
    if not admins:
        db.session.rollback()
        raise errors.Conflict("The last active admin cannot be demoted, deactivated or deleted.")


def delete_own_account(user: User, password: str, code: str | None = None) -> None:
    """Self-service deletion: ``delete_account`` after checking the user's
    password (and, while TOTP is on, a code). Raises ValidationFailed,
    RateLimited (password or code checks locked out), Conflict (last admin)."""
    confirm_password(user, password, "password")
    mfa.step_up(user, code)
    delete_account(user)
    current_app.logger.info("account deleted", extra={"event": "account_delete", "user_id": user.id})


def delete_account(user: User) -> None:
    """Delete an account and revoke every token it holds: the one deletion,
    for the user, the admin API and the CLI. Raises Conflict for the last
    active admin (nothing is changed)."""
    was_admin = removing_admin(user)
    login_sessions = sessions.active_sessions(user)
    db.session.delete(user)
    if was_admin:
        ensure_an_admin_remains()
    # Only once the change is known to be allowed: a refused one changes nothing.
    revocation.revoke_deleted_user(user.id, login_sessions)
    db.session.commit()
