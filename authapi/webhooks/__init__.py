"""Webhooks (API.md §10, the Standard Webhooks specification) through a
transactional outbox.

- ``outbox``: a delivery row per matching event and URL, added in the event's
  own transaction (the ``recorded`` signal of authapi.services.events);
- ``deliveries``: the outbox's queries: claim what is due, settle an
  attempt, the counts of ``webhooks status`` and ``/metrics``;
- ``sender``: one attempt: the body, its signature (the ``standardwebhooks``
  library), the POST;
- ``worker``: the delivery process ``flask webhooks run``: the loop, what
  wakes it, how it stops.
"""

from .outbox import init_app

__all__ = ["init_app"]
