"""The delivery process, ``flask --app wsgi webhooks run`` (the Procfile's
``worker:``): claim the due deliveries, POST each, write its outcome, wait
for more. Any number may run at once (PostgreSQL; the claim keeps them
apart, authapi.webhooks.deliveries).

It outlives its backends: a receiver that fails is a failed attempt, retried
later; a database that fails is logged and waited out (the pause doubling up
to LONGEST_PAUSE), and the claim of the attempt it interrupted expires, so
that delivery is attempted again. ``stop`` (SIGTERM, SIGINT) lets the
attempt in flight finish and ends the loop.
"""

import logging
import threading

import psycopg
import requests
from psycopg import sql
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError
from standardwebhooks.webhooks import Webhook

from ..models import WebhookDelivery, utcnow
from . import deliveries, sender
from .outbox import CHANNEL

log = logging.getLogger("authapi.webhooks")

# Seconds between looks for due deliveries when nothing wakes the process
# sooner: the latency of SQLite, and of retries falling due.
IDLE_POLL_SECONDS = 1.0
# The longest pause after a database failure, in seconds.
LONGEST_PAUSE = 30.0
LISTEN_CONNECT_TIMEOUT = 5


class Worker:
    """Delivers the outbox of ``app``'s database. ``clock`` gives the time of
    every claim, attempt and schedule (tests move it instead of sleeping)."""

    def __init__(self, app, clock=utcnow):
        self.app = app
        self.clock = clock
        self.stopping = threading.Event()
        self.signer = Webhook(app.config["WEBHOOK_SECRET"])
        self.http = requests.Session()

    def stop(self, *_signal_args) -> None:
        """Finish the attempt in flight, then stop (a signal handler)."""
        self.stopping.set()

    def deliver_due(self) -> int:
        """Attempt the deliveries due now, one at a time, until none is left
        or ``stop``. Returns how many attempts were made. Raises
        SQLAlchemyError when the database fails."""
        made = 0
        with self.app.app_context():
            while not self.stopping.is_set():
                delivery = deliveries.claim_next(self.clock())
                if delivery is None:
                    break
                self._attempt(delivery)
                made += 1
        return made

    def run(self) -> None:
        """Deliver until ``stop``, waiting between passes for a NOTIFY or the
        idle poll (``Wakeup``)."""
        wakeup = Wakeup(self.app, self.stopping)
        log.info("webhook delivery started (%s)", wakeup.describe())
        failures = 0
        try:
            while not self.stopping.is_set():
                wakeup.listen()
                try:
                    self.deliver_due()
                except SQLAlchemyError as error:
                    failures += 1
                    pause = min(LONGEST_PAUSE, 2.0 ** (failures - 1))
                    log.warning("webhook delivery: database unavailable (%s); next try in %.0f s",
                                type(error).__name__, pause)
                    self.stopping.wait(pause)
                    continue
                failures = 0
                wakeup.wait(IDLE_POLL_SECONDS)
        finally:
            wakeup.close()
            self.http.close()
        log.info("webhook delivery stopped")

    def _attempt(self, delivery: WebhookDelivery) -> None:
        config = self.app.config
        attempt = sender.post(self.http, delivery.url, self.signer, delivery.event, self.clock(),
                              config["WEBHOOK_TIMEOUT"])
        outcome = deliveries.settle(delivery, self.clock(), attempt.status_code, attempt.error)
        number, where = delivery.attempts + 1, sender.origin(delivery.url)
        name = f"webhook {delivery.event_id} ({delivery.event.type}) to {where}"
        if outcome == deliveries.DELIVERED:
            log.info("%s delivered (attempt %d, status %d)", name, number, attempt.status_code)
        elif outcome == deliveries.RETRY:
            log.warning("%s: %s; attempt %d of %d, next in %.0f s", name, attempt.error, number,
                        config["WEBHOOK_MAX_ATTEMPTS"], deliveries.backoff(number).total_seconds())
        elif outcome == deliveries.FAILED:
            log.error("%s: %s; failed after %d attempts", name, attempt.error, number)
        else:
            log.warning("%s: the claim expired during the attempt, another process has it", name)


class Wakeup:
    """What ends the wait between passes: the NOTIFY a committed event's
    transaction sends (PostgreSQL: LISTEN on a connection of its own), or the
    idle poll. The poll also finds the retries falling due, and anything
    committed while the connection was down. SQLite has only the poll."""

    def __init__(self, app, stopping: threading.Event):
        url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
        self.conninfo = None
        if url.get_backend_name() == "postgresql":
            self.conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self.stopping = stopping
        self.connection = None
        self.lost = False  # said once per outage, not at every reconnection tried

    def describe(self) -> str:
        if self.conninfo is None:
            return f"polling every {IDLE_POLL_SECONDS:g} s"
        return f"woken by NOTIFY {CHANNEL}, polling every {IDLE_POLL_SECONDS:g} s"

    def listen(self) -> None:
        """LISTEN, unless already listening (PostgreSQL). Called before each
        pass: whatever commits after the pass's claim then wakes the next."""
        if self.conninfo is None or self.connection is not None:
            return
        try:
            self.connection = psycopg.connect(self.conninfo, autocommit=True,
                                              connect_timeout=LISTEN_CONNECT_TIMEOUT)
            self.connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANNEL)))
        except psycopg.Error as error:
            self._lost(error)
            return
        if self.lost:
            log.info("webhook delivery: listening again")
            self.lost = False

    def wait(self, seconds: float) -> None:
        """Until a NOTIFY arrives, ``seconds`` pass, or the process is stopping."""
        if self.connection is None:
            self.stopping.wait(seconds)
            return
        try:
            for _ in self.connection.notifies(timeout=seconds, stop_after=1):
                pass
        except psycopg.Error as error:
            self._lost(error)
            self.stopping.wait(seconds)

    def _lost(self, error: psycopg.Error) -> None:
        if not self.lost:
            log.warning("webhook delivery: no LISTEN connection (%s); polling", type(error).__name__)
            self.lost = True
        self.close()

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
