"""Database models (SQLAlchemy 2.0, typed)."""

import uuid
from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    JSON,
    LargeBinary,
    String,
    TypeDecorator,
    func,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .extensions import db

ROLES = ("user", "admin")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(timezone.utc)
            if dialect.name == "sqlite":
                value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value


class User(db.Model):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('user', 'admin')", name="ck_users_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254))
    username: Mapped[str] = mapped_column(String(32))
    full_name: Mapped[str | None] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default="user")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Every token issued before this moment is revoked (logout-all, password
    # change, deactivation, role change). Redis holds the same cut-off for the
    # per-request check; this copy lets the marks be rebuilt after Redis lost
    # its data (API.md §7).
    tokens_valid_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Two-factor authentication (API.md §8). The TOTP secrets are Fernet tokens
    # (authapi.totp.encrypt), never the base32 secret itself.
    totp_secret: Mapped[str | None] = mapped_column(String(255))
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The last time step a code was accepted for: a code is accepted once, by
    # ``UPDATE ... WHERE totp_last_step < :step`` (services/mfa.py).
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    totp_pending_secret: Mapped[str | None] = mapped_column(String(255))
    totp_pending_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The WebAuthn user handle (API.md §9): random bytes, made at the first
    # passkey registration, that an authenticator keeps beside each of the
    # user's passkeys and hands back at login. Not the id or the email, which
    # would tell the authenticator (and whoever reads it) who the user is here.
    passkey_user_handle: Mapped[bytes | None] = mapped_column(LargeBinary(64))

    sessions: Mapped[list["AuthSession"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def mfa_enabled(self) -> bool:
        return self.totp_enabled_at is not None

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username}>"


# Uniqueness is the database's job, case-insensitively, so two racing
# registrations cannot both pass a pre-check.
Index("uq_users_email_lower", func.lower(User.email), unique=True)
Index("uq_users_username_lower", func.lower(User.username), unique=True)


class AuthSession(db.Model):
    """One login: the refresh-token chain it rotates and where it came from."""

    __tablename__ = "sessions"
    __table_args__ = (Index("ix_sessions_user_active", "user_id", "revoked_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=lambda: str(uuid.uuid4()))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # The jti of the one refresh token that may still be exchanged.
    refresh_jti: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user_agent: Mapped[str | None] = mapped_column(String(255))
    ip: Mapped[str | None] = mapped_column(String(45))
    # How the login was made (RFC 8176 methods, space-separated): every token
    # of the session carries it as ``amr``, refreshes included.
    amr: Mapped[str] = mapped_column(String(64), default="pwd", server_default="pwd")

    user: Mapped[User] = relationship(back_populates="sessions")

    # Not stored: set when listing, for the session the request's token belongs to.
    current = False

    def is_active_at(self, moment: datetime) -> bool:
        return self.revoked_at is None and self.expires_at > moment


class OneTimeToken(db.Model):
    """A password-reset or email-verification token, stored only as a hash."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (
        CheckConstraint(
            "purpose IN ('password_reset', 'email_verify')", name="ck_one_time_tokens_purpose"
        ),
        Index("ix_one_time_tokens_user_purpose", "user_id", "purpose"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    # SHA-256 of the token: a leaked table cannot be replayed. No salt is needed
    # because the token itself carries 256 random bits.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The address a verification token was sent to: changing the email again
    # voids it.
    email: Mapped[str | None] = mapped_column(String(254))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class DeviceToken(db.Model):
    """A device that logged in successfully (OWASP's device cookie, API.md §7):
    presenting its token exempts a login from the username's lockout. Stored
    only as a hash, like the one-time tokens."""

    __tablename__ = "device_tokens"
    __table_args__ = (Index("ix_device_tokens_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class RecoveryCode(db.Model):
    """One of a user's ten recovery codes (API.md §8), stored only as the
    SHA-256 of its normalised form. No salt or slow hash is needed: each code
    carries 80 random bits, so even a fast hash cannot be searched."""

    __tablename__ = "recovery_codes"
    __table_args__ = (Index("ix_recovery_codes_user_hash", "user_id", "code_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SecurityEvent(db.Model):
    """One entry of the audit trail (API.md §10), written in the transaction
    of the change it records (authapi.services.events).

    ``user_id`` and ``actor_id`` are plain integers, not foreign keys: the
    trail outlives the accounts it names (``user.deleted`` must survive the
    deletion). Each index serves one listing, newest first, with the keyset
    ``(occurred_at, id)`` as its tail."""

    __tablename__ = "security_events"
    __table_args__ = (
        Index("ix_security_events_occurred", "occurred_at", "id"),
        Index("ix_security_events_user", "user_id", "occurred_at", "id"),
        Index("ix_security_events_type", "type", "occurred_at", "id"),
    )

    # Opaque to clients; a webhook's ``webhook-id`` (Standard Webhooks).
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    user_id: Mapped[int | None] = mapped_column(Integer)
    actor_id: Mapped[int | None] = mapped_column(Integer)
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(255))
    request_id: Mapped[str | None] = mapped_column(String(128))
    data: Mapped[dict] = mapped_column(JSON)


class Passkey(db.Model):
    """A WebAuthn credential of a user (API.md §9): its public key and what
    the authenticator said of it. ``credential_id`` is the authenticator's
    own id, base64url-encoded in the API as the passkey's ``id``."""

    __tablename__ = "passkeys"
    __table_args__ = (Index("ix_passkeys_user_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    # At most 1023 bytes (WebAuthn Level 3, §7.1 step 24).
    credential_id: Mapped[bytes] = mapped_column(LargeBinary(1023), unique=True)
    # The COSE_Key of the credential, as the authenticator encoded it.
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    # The authenticator's signature counter, an unsigned 32-bit number.
    sign_count: Mapped[int] = mapped_column(BigInteger)
    # AuthenticatorTransport values, space-separated: hints for a browser.
    transports: Mapped[str] = mapped_column(String(255), default="")
    # The BE and BS flags: whether it may be synced, and whether it is.
    backup_eligible: Mapped[bool] = mapped_column(Boolean)
    backed_up: Mapped[bool] = mapped_column(Boolean)
    name: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class WebhookDelivery(db.Model):
    """One event to POST to one of WEBHOOK_URLS (API.md §10): the outbox row,
    added in the event's transaction (authapi.webhooks.outbox) and worked off
    by the delivery processes (authapi.webhooks.worker). A process claims a
    due row by setting ``claimed_until``; one killed mid-attempt leaves the
    claim to expire, and any process takes the row again. Deleted with its
    event (``events purge``)."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="ck_webhook_deliveries_status"
        ),
        # The claim: pending rows due now, the longest waiting first.
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        # The cascade from a purged event.
        Index("ix_webhook_deliveries_event_id", "event_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("security_events.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the last attempt met: the answer's status, or a word for the
    # failure (never the URL, which may carry a token, nor the secret).
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(255))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    event: Mapped[SecurityEvent] = relationship()


class WebhookOutcomeCount(db.Model):
    """Delivery attempts by outcome (delivered, retry, failed), counted by
    every delivery process: ``authapi_webhook_deliveries_total``. Apart from
    the deliveries so that a scrape reads three rows, not the whole outbox,
    and a purge of old deliveries never makes the counter go down."""

    __tablename__ = "webhook_outcome_counts"

    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)
