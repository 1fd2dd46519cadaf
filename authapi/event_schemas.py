"""The audit trail's query strings and answers (API.md §10): ``GET
/users/me/events``, ``GET /events``, and the event itself, which is also a
webhook's ``data``."""

from marshmallow import Schema, fields, validate

from .fields import Cursor, EventTypes, UTCDateTime
from .schemas import ParametersIn
from .tokens import MAX_ID


class EventQueryIn(ParametersIn):
    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=100))
    after = Cursor(data_key="cursor", metadata={"description": "`next_cursor` of the previous page."})


class EventFilterIn(EventQueryIn):
    user_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    types = EventTypes(data_key="type", metadata={"description": "Comma-separated event types."})
    since = UTCDateTime(metadata={"description": "Events at or after this moment."})
    until = UTCDateTime(metadata={"description": "Events before this moment."})


class EventOut(Schema):
    """A security event (API.md §10), also a webhook's ``data``."""

    id = fields.String()
    type = fields.String()
    occurred_at = fields.DateTime()
    user_id = fields.Integer(allow_none=True)
    actor_id = fields.Integer(allow_none=True)
    ip = fields.String(allow_none=True)
    user_agent = fields.String(allow_none=True)
    request_id = fields.String(allow_none=True)
    data = fields.Dict()


class EventPageOut(Schema):
    items = fields.List(fields.Nested(EventOut))
    next_cursor = Cursor(allow_none=True, metadata={"description": "null on the last page."})
