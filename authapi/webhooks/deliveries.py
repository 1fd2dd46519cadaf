"""The outbox's queries, for the delivery processes (authapi.webhooks.worker),
``flask webhooks status`` and ``/metrics``.

A delivery is attempted only under a claim: ``claim_next`` marks a due row
``claimed_until`` the end of the longest attempt plus a margin, and commits
before anything is sent. On PostgreSQL the claim locks the row it takes and
skips those another process is taking (``FOR UPDATE SKIP LOCKED``), so two
processes never send the same attempt. ``settle`` then writes the outcome
only while the claim it was made under still stands: an attempt that
outlived its claim (the row has been taken again) changes nothing.
"""

from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import func, literal, or_, select, union_all, update
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import SecurityEvent, WebhookDelivery, WebhookOutcomeCount

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
STATUSES = (PENDING, DELIVERED, FAILED)
# What an attempt's outcome is counted as: a failed attempt that will be
# tried again is a retry; the last one makes the delivery failed.
RETRY = "retry"
OUTCOMES = (DELIVERED, RETRY, FAILED)

# A claim outlasts the longest attempt (WEBHOOK_TIMEOUT) by this much: a
# process killed mid-attempt leaves its deliveries to the others after that
# (API.md §10: within WEBHOOK_TIMEOUT + 30 seconds).
CLAIM_MARGIN = timedelta(seconds=30)
# The doubling stops here, so a large WEBHOOK_MAX_ATTEMPTS cannot schedule
# an attempt beyond any date (or overflow timedelta).
LONGEST_BACKOFF = timedelta(days=1)


def claim_length() -> timedelta:
    return timedelta(seconds=current_app.config["WEBHOOK_TIMEOUT"]) + CLAIM_MARGIN


def backoff(attempts: int) -> timedelta:
    """The wait after the ``attempts``-th failed attempt: WEBHOOK_BACKOFF_SECONDS,
    doubling each time."""
    first = current_app.config["WEBHOOK_BACKOFF_SECONDS"]
    return min(timedelta(seconds=first * 2 ** min(attempts - 1, 32)), LONGEST_BACKOFF)


def claim_next(now: datetime) -> WebhookDelivery | None:
    """Claim the delivery due longest at ``now`` (pending, not under a live
    claim) for this process, and commit; None when nothing is due.

    One statement: the SELECT ... FOR UPDATE SKIP LOCKED (PostgreSQL) picks a
    row no other process is taking, the UPDATE around it claims it. SQLite
    has no row locks but runs the statement under its database lock, so two
    processes there cannot claim one row either (they take turns). One row at
    a time: each attempt starts within its own claim, so a claim never runs
    out while its delivery waits behind others."""
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == PENDING,
            WebhookDelivery.next_attempt_at <= now,
            or_(WebhookDelivery.claimed_until.is_(None), WebhookDelivery.claimed_until <= now),
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    delivery = db.session.scalars(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(due))
        .values(claimed_until=now + claim_length())
        .returning(WebhookDelivery),
        execution_options={"synchronize_session": False},
    ).one_or_none()
    if delivery is not None:
        # Its event too, before the commit (``delivery.event`` then finds it in
        # the session): no transaction stays open during the POST.
        db.session.get(SecurityEvent, delivery.event_id)
    db.session.commit()
    return delivery


def settle(delivery: WebhookDelivery, now: datetime, status_code: int | None, error: str | None) -> str | None:
    """Write the outcome of the attempt made under ``delivery``'s claim
    (``error`` None: delivered), count it, and commit. Returns the outcome
    (delivered, retry or failed), or None when the claim had expired and the
    row was taken again: then nothing is written."""
    attempts = delivery.attempts + 1
    values = {"attempts": attempts, "claimed_until": None, "last_status_code": status_code, "last_error": error}
    if error is None:
        outcome = DELIVERED
        values.update(status=DELIVERED, delivered_at=now)
    elif attempts >= current_app.config["WEBHOOK_MAX_ATTEMPTS"]:
        outcome = FAILED
        values.update(status=FAILED)
    else:
        outcome = RETRY
        values.update(next_attempt_at=now + backoff(attempts))
    written = db.session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery.id, WebhookDelivery.claimed_until == delivery.claimed_until)
        .values(**values),
        execution_options={"synchronize_session": False},
    ).rowcount
    if written:
        _count(outcome)
    db.session.commit()
    return outcome if written else None


def _count(outcome: str) -> None:
    # An upsert: the row of an outcome is made by its first attempt.
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    db.session.execute(
        insert(WebhookOutcomeCount)
        .values(outcome=outcome, total=1)
        .on_conflict_do_update(
            index_elements=[WebhookOutcomeCount.outcome], set_={"total": WebhookOutcomeCount.total + 1}
        )
    )


def status_counts() -> dict[str, int]:
    """{status: how many deliveries} for pending, delivered and failed."""
    rows = db.session.execute(
        select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)
    ).all()
    return {status: 0 for status in STATUSES} | dict(rows)


def scrape_counts() -> tuple[dict[str, int], int]:
    """({outcome: attempts ever}, deliveries waiting) for /metrics: one round
    trip, reading the three count rows and the pending part of the due index."""
    backlog = "backlog"
    rows = db.session.execute(
        union_all(
            select(WebhookOutcomeCount.outcome, WebhookOutcomeCount.total),
            select(literal(backlog), func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.status == PENDING),
        )
    ).all()
    counts = dict(rows)
    return {outcome: counts.get(outcome, 0) for outcome in OUTCOMES}, counts.get(backlog, 0)
