"""Device tokens (API.md §7, OWASP's "device cookie"): what a browser or app
that once logged in successfully presents at its next logins, so that the
username's lockout, which anyone can trigger, does not shut the owner out.

A device token is 256 random bits, bound to one user and stored only as its
SHA-256 (a leaked table cannot be replayed; the token's entropy makes a salt
useless). It is void once ``LOCKOUT_THRESHOLD`` logins with it failed in a row
(the count is authapi.lockout's), on a password reset, and gone with the
account (foreign key cascade); it expires ``DEVICE_TOKEN_TTL`` seconds after it
was issued. Whether a login may use it is decided in ``services.logins.login``.
"""

import secrets
from datetime import timedelta

from flask import current_app
from sqlalchemy import delete, func, or_, select, update

from ..digests import digest
from ..extensions import db
from ..models import DeviceToken, User, utcnow

# A client that never sends its token back (a script, a browser that drops
# cookies) would otherwise add a row per login, kept for DEVICE_TOKEN_TTL.
# Ten devices per account: phones, laptops and browsers with room to spare;
# the oldest beyond that lose their exemption, nothing else.
MAX_PER_USER = 10


def recognise(token: str | None, login: str) -> DeviceToken | None:
    """The usable device token ``token`` if it belongs to the account named by
    ``login`` (username or email, case-insensitively), else None.

    Unknown, void, expired and another user's tokens are all None alike. The
    look-up is by the token's hash alone, so its cost does not depend on
    whether ``login`` names an account.
    """
    if not token:
        return None
    lowered = login.lower()
    return db.session.scalar(
        select(DeviceToken)
        .join(User, User.id == DeviceToken.user_id)
        .where(
            DeviceToken.token_hash == digest(token),
            DeviceToken.voided_at.is_(None),
            DeviceToken.expires_at > utcnow(),
            or_(func.lower(User.username) == lowered, func.lower(User.email) == lowered),
        )
    )


def issue(user: User) -> str:
    """A new device token for ``user``, added to ``db.session`` (not committed);
    the user's oldest beyond ``MAX_PER_USER`` are deleted."""
    newest = (
        select(DeviceToken.id)
        .where(DeviceToken.user_id == user.id)
        .order_by(DeviceToken.created_at.desc(), DeviceToken.id.desc())
        .offset(MAX_PER_USER - 1)
    )
    db.session.execute(delete(DeviceToken).where(DeviceToken.id.in_(newest)))
    token = secrets.token_urlsafe(32)
    db.session.add(
        DeviceToken(
            user_id=user.id,
            token_hash=digest(token),
            expires_at=utcnow() + timedelta(seconds=current_app.config["DEVICE_TOKEN_TTL"]),
        )
    )
    return token


def void(device: DeviceToken) -> bool:
    """Void one device token for good (not committed: the refused login that
    exhausted it commits it with its events). True when this call voided it,
    False when a concurrent one did."""
    return db.session.execute(
        update(DeviceToken)
        .where(DeviceToken.id == device.id, DeviceToken.voided_at.is_(None))
        .values(voided_at=utcnow())
        .execution_options(synchronize_session=False)
    ).rowcount == 1


def void_all(user: User) -> None:
    """Void every device token of ``user`` (not committed)."""
    db.session.execute(
        update(DeviceToken)
        .where(DeviceToken.user_id == user.id, DeviceToken.voided_at.is_(None))
        .values(voided_at=utcnow())
        .execution_options(synchronize_session=False)
    )


def purge_unusable() -> int:
    """Delete expired and void device tokens. Returns how many."""
    count = db.session.execute(
        delete(DeviceToken).where(
            or_(DeviceToken.expires_at <= utcnow(), DeviceToken.voided_at.is_not(None))
        )
    ).rowcount
    db.session.commit()
    return count
