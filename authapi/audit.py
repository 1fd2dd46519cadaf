"""The audit trail's routes (API.md §10): a user's own security events, and
every account's for admins. Read-only; the events are written by the
services (authapi.services.events)."""

from flask_jwt_extended import current_user, jwt_required
from marshmallow import RAISE

from .docs import bearer, refusals
from .extensions import Blueprint, read_only
from .permissions import admin_required
from .event_schemas import EventFilterIn, EventPageOut, EventQueryIn
from .services import events

bp = Blueprint("events", __name__, description="Security events: the audit trail")

# An unknown parameter is refused (webargs ignores them in a query string by
# default): a filter misspelt, or given where it does not apply (``user_id``
# on one's own events), must not silently list something else.
QUERY = {"location": "query", "unknown": RAISE}


@bp.get("/users/me/events")
@read_only
@jwt_required()
@bearer("access")
@bp.arguments(EventQueryIn, **QUERY)
@bp.response(200, EventPageOut)
def list_own_events(query):
    return events.list_events(user_id=current_user.id, **query)


@bp.get("/events")
@read_only
@jwt_required()
@bearer("access")
@admin_required
@refusals(403)
@bp.arguments(EventFilterIn, **QUERY)
@bp.response(200, EventPageOut)
def list_events(query):
    return events.list_events(**query)
