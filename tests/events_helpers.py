"""Reading the audit trail in tests: the stored events as the API shows them
(event_schemas.EventOut), oldest first, and an admin to ask the API with."""

from sqlalchemy import select

from authapi.extensions import db
from authapi.models import SecurityEvent, User
from authapi.event_schemas import EventOut

from .clients import bearer


def stored(app, **where) -> list[dict]:
    """Every stored event matching ``where`` (column=value), oldest first."""
    with app.app_context():
        query = select(SecurityEvent).filter_by(**where)
        rows = db.session.scalars(query.order_by(SecurityEvent.occurred_at, SecurityEvent.id)).all()
        return EventOut(many=True).dump(rows)


def types(app, **where) -> list[str]:
    return [event["type"] for event in stored(app, **where)]


def one(app, event_type, **where) -> dict:
    """The one stored event of ``event_type`` (matching ``where``)."""
    found = stored(app, type=event_type, **where)
    assert len(found) == 1, found
    return found[0]


def make_admin(app, auth, username="root") -> dict:
    """A registered, promoted, logged-in admin: its user json with ``headers``."""
    user = auth.register(username=username, email=f"{username}@example.com")
    with app.app_context():
        db.session.get(User, user["id"]).role = "admin"
        db.session.commit()
    pair = auth.login(username)
    return {**user, "pair": pair, "headers": bearer(pair["access_token"])}
