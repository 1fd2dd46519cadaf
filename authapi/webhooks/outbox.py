"""The outbox: with WEBHOOK_URLS set, each event that WEBHOOK_EVENTS selects
gets a delivery row per URL, added to the session by the ``recorded`` signal
inside the event's transaction, so the deliveries commit or roll back with
the event (and the change it records). Without WEBHOOK_URLS nothing is
connected: the hot paths pay nothing."""

from sqlalchemy import func, select

from config import ConfigError

from ..extensions import db
from ..models import WebhookDelivery
from ..services import events

# PostgreSQL's LISTEN/NOTIFY channel that wakes the delivery processes.
CHANNEL = "authapi_webhooks"


def init_app(app) -> None:
    """Refuse a WEBHOOK_EVENTS entry that selects no event type (a typo would
    silently deliver nothing), then connect the outbox when WEBHOOK_URLS is set.

    Raises config.ConfigError (one line) for such an entry. Checked here, not
    in config.checks: the types are authapi's own (events.EVENT_TYPES)."""
    for entry in app.config["WEBHOOK_EVENTS"]:
        if not any(selected(event_type, [entry]) for event_type in events.EVENT_TYPES):
            raise ConfigError(
                f"WEBHOOK_EVENTS entry {entry!r} matches no event type (the types are listed in docs/events.md)"
            )
    if app.config["WEBHOOK_URLS"]:
        events.recorded.connect(add_deliveries, app)


def selected(event_type: str, patterns: list[str]) -> bool:
    """Whether WEBHOOK_EVENTS ``patterns`` (exact types, or prefixes like
    ``login.*``) select ``event_type``; no pattern selects every type."""
    if not patterns:
        return True
    return any(
        event_type == pattern or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
        for pattern in patterns
    )


def add_deliveries(app, event) -> None:
    """The ``recorded`` receiver: the event's deliveries, due at once."""
    if not selected(event.type, app.config["WEBHOOK_EVENTS"]):
        return
    db.session.add_all(
        WebhookDelivery(event_id=event.id, url=url, next_attempt_at=event.occurred_at)
        for url in app.config["WEBHOOK_URLS"]
    )
    if db.session.get_bind().dialect.name == "postgresql":
        # Delivered to the listening delivery processes when, and only if,
        # this transaction commits; repeats within it are sent once.
        db.session.execute(select(func.pg_notify(CHANNEL, "")))
