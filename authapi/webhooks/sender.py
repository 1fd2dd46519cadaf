"""One delivery attempt (API.md §10, Standard Webhooks): the body, its
signature, the POST, and what came of it.

The signature is the ``standardwebhooks`` library's own ``Webhook.sign``
over ``{webhook-id}.{webhook-timestamp}.{body}``, so a receiver verifying with
any Standard Webhooks library agrees with it byte for byte. What comes back
is a plain outcome: the answer's status code and, unless it was a 2xx within
WEBHOOK_TIMEOUT, a short word for the failure that never quotes the URL
(which may carry a token) nor the secret.
"""

import json
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import requests
from standardwebhooks.webhooks import Webhook

from ..models import SecurityEvent
from ..event_schemas import EventOut

USER_AGENT = "authapi-webhooks"


@dataclass(frozen=True)
class Attempt:
    status_code: int | None  # None: no answer
    error: str | None  # None: delivered

    @property
    def delivered(self) -> bool:
        return self.error is None


def body(event: SecurityEvent) -> bytes:
    """``{"type", "timestamp", "data"}``, ``data`` being the event exactly as
    ``GET /events`` shows it. The same bytes on every attempt."""
    data = EventOut().dump(event)
    message = {"type": event.type, "timestamp": data["occurred_at"], "data": data}
    return json.dumps(message, separators=(",", ":")).encode()


def headers(signer: Webhook, event: SecurityEvent, payload: bytes, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of an attempt made ``at``: ``webhook-id``
    is the event's id, the same on every attempt, so receivers can drop repeats."""
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event.id,
        # Unix seconds, as sign() floors them.
        "webhook-timestamp": str(math.floor(at.timestamp())),
        "webhook-signature": signer.sign(event.id, at, payload),
    }


def post(session: requests.Session, url: str, signer: Webhook, event: SecurityEvent,
         at: datetime, timeout: int) -> Attempt:
    """POST the event to ``url``. Delivered only by a 2xx answered within
    ``timeout`` seconds; redirects are not followed (a 3xx is a failure: the
    receiver's URL is configured, not discovered)."""
    payload = body(event)
    try:
        # stream: the answer's body is never read, only its status.
        response = session.post(
            url, data=payload, headers=headers(signer, event, payload, at),
            timeout=timeout, allow_redirects=False, stream=True,
        )
    except requests.Timeout:
        return Attempt(None, "timeout")
    except requests.ConnectionError:
        return Attempt(None, "connection failed")
    except (requests.RequestException, ValueError) as error:
        return Attempt(None, type(error).__name__)
    with response:
        code = response.status_code
        if response.elapsed > timedelta(seconds=timeout):
            return Attempt(code, "timeout")
        if 200 <= code < 300:
            return Attempt(code, None)
        if 300 <= code < 400:
            return Attempt(code, f"redirect {code} (not followed)")
        return Attempt(code, f"status {code}")


def origin(url: str) -> str:
    """The scheme, host and port of ``url``, for logs: a user, path or query
    may hold a receiver's credentials."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
