"""Security events (API.md §10): the audit trail.

A service that changes an account calls ``record`` before its commit: the
event is added to the same database transaction, so a change rolled back
leaves no event and no event describes a change that did not happen. A
refused attempt (a failed login, a lockout) commits its event on its own.

Where an event comes from is read here, once: the client's address as the
trusted proxies leave it (authapi.http), its User-Agent, the request id, and
the actor, the signed-in user of the request's token. A service passes
``actor_id`` itself when it knows better: the user of an anonymous flow
(registration, login, reset), an admin of the CLI (None).

Extension point: ``recorded`` is a blinker signal sent, for the app, with
each event just added. A receiver connected to it (``recorded.connect(fn,
app)``) runs inside the caller's transaction, before its commit, so what it
adds to ``db.session`` (a webhook outbox row) is committed or rolled back
with the event.
"""

import uuid
from datetime import datetime, timedelta

from blinker import Namespace
from flask import current_app, has_request_context, request
from sqlalchemy import delete, select, tuple_

from .. import http
from ..extensions import db
from ..models import SecurityEvent, utcnow
from ..tokens import signed_in_user_id

# type -> when it is written (API.md §10).
EVENT_TYPES = {
    "user.registered": "registration",
    "user.created": "an admin or the CLI made an account",
    "user.updated": "an account's profile, role or status changed",
    "user.deleted": "an account was deleted, by its user, an admin or the CLI",
    "login.succeeded": "a session started",
    "login.failed": "a login was refused",
    "session.ended": "logout, logout-all, a session deleted",
    "session.reuse_detected": "a spent refresh token was presented again",
    "password.changed": "by the user, or an admin's or the CLI's set-password",
    "password.reset": "with an emailed token",
    "email.changed": "by the user or an admin",
    "email.verified": "with an emailed token",
    "mfa.enabled": "TOTP turned on",
    "mfa.disabled": "TOTP turned off, by the user or an admin's reset",
    "mfa.recovery_codes_regenerated": "a new set of recovery codes",
    "mfa.recovery_code_used": "a recovery code was spent",
    "passkey.added": "a passkey was registered",
    "passkey.removed": "a passkey was deleted",
    "lockout.started": "the failure that reached LOCKOUT_THRESHOLD",
}

USER_AGENT_MAX_LENGTH = 255

recorded = Namespace().signal("authapi.event-recorded")

# ``record``'s default actor: the signed-in user of the request, if any.
FROM_REQUEST = object()


def record(event_type: str, *, user_id: int | None, data: dict | None = None, actor_id=FROM_REQUEST) -> SecurityEvent:
    """Add an event to the current transaction (the caller commits) and send
    ``recorded``. ``data`` must hold no secret: no password, token or code.
    Raises ValueError for an unknown type (a bug, never a client's doing)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown security event type {event_type!r}")
    event = SecurityEvent(
        # Set here, not at the flush: a receiver of ``recorded`` reads them.
        id=str(uuid.uuid4()),
        type=event_type,
        occurred_at=utcnow(),
        user_id=user_id,
        actor_id=signed_in_user_id() if actor_id is FROM_REQUEST else actor_id,
        data=data or {},
        **_origin(),
    )
    db.session.add(event)
    recorded.send(current_app._get_current_object(), event=event)
    return event


def record_alone(event_type: str, *, user_id: int | None, data: dict | None = None) -> SecurityEvent:
    """Record the event of a refused request and commit it on its own:
    whatever else the request wrote is rolled back first, as a refusal
    changes nothing (API.md §1). The caller then raises its refusal."""
    db.session.rollback()
    event = record(event_type, user_id=user_id, data=data)
    db.session.commit()
    return event


def _origin() -> dict:
    if not has_request_context():  # the CLI, a background job
        return {"ip": None, "user_agent": None, "request_id": None}
    user_agent = http.client_user_agent()[:USER_AGENT_MAX_LENGTH]
    return {
        "ip": request.remote_addr,
        "user_agent": user_agent or None,
        "request_id": http.current_request_id(),
    }


def list_events(
    limit: int,
    after: tuple[datetime, str] | None = None,
    user_id: int | None = None,
    types: list[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict:
    """A page of events, newest first: ``{"items", "next_cursor"}``, where
    ``next_cursor`` is the (occurred_at, id) key of the page's last event
    when more may follow, else None. ``after`` is such a key: the page starts
    below it. ``since`` is inclusive, ``until`` exclusive.

    Keyset paging, not OFFSET: each page starts strictly below the previous
    page's last key, so events written meanwhile (above the first page) shift
    nothing, and none is listed twice or skipped."""
    order = (SecurityEvent.occurred_at, SecurityEvent.id)
    query = select(SecurityEvent)
    if user_id is not None:
        query = query.where(SecurityEvent.user_id == user_id)
    if types:
        query = query.where(SecurityEvent.type.in_(types))
    if since is not None:
        query = query.where(SecurityEvent.occurred_at >= since)
    if until is not None:
        query = query.where(SecurityEvent.occurred_at < until)
    if after is not None:
        query = query.where(tuple_(*order) < tuple_(*after))
    # One more than asked: whether there is a next page, without a count.
    rows = db.session.scalars(query.order_by(*(column.desc() for column in order)).limit(limit + 1)).all()
    items = list(rows[:limit])
    more = len(rows) > limit
    return {"items": items, "next_cursor": (items[-1].occurred_at, items[-1].id) if more else None}


def purge_expired() -> int:
    """Delete the events older than ``EVENT_RETENTION_DAYS``. Returns how many."""
    cutoff = utcnow() - timedelta(days=current_app.config["EVENT_RETENTION_DAYS"])
    count = db.session.execute(delete(SecurityEvent).where(SecurityEvent.occurred_at < cutoff)).rowcount
    db.session.commit()
    return count
