"""Webhooks in the tests: a real receiver, the delivery process as a
subprocess, and reading the outbox.

``Receiver`` is a real HTTP server on a free loopback port that verifies
every delivery with the ``standardwebhooks`` library's ``Webhook.verify``, as
a receiver in production would, and keeps what it got. It can be told to
answer another status (``status``, ``location`` for a redirect), to answer
late (``delay`` seconds: a receiver that times out), or to hold each request
until the test lets it go (``hold``: a process caught mid-attempt). A closed
port (``closed_url``) is a receiver that refuses connections.

``DeliveryProcess`` runs the Procfile's ``worker:`` command.
"""

import base64
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from authapi.extensions import db
from authapi.models import WebhookDelivery, utcnow
from authapi.services import events
from authapi.webhooks.worker import Worker

from .servers import ROOT, free_port, stop_process

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
# Small numbers, so a test goes through every attempt quickly.
SETTINGS = {"WEBHOOK_SECRET": SECRET, "WEBHOOK_TIMEOUT": 1, "WEBHOOK_BACKOFF_SECONDS": 1,
            "WEBHOOK_MAX_ATTEMPTS": 4}
DELIVERED_LINE = re.compile(r"webhook ([0-9a-f-]{36}) \(\S+\) to \S+ delivered")


class Receiver:
    def __init__(self, secret: str = SECRET):
        self.verifier = Webhook(secret)
        self.status = 204
        self.location = None
        self.delay = 0.0
        self.hold = None  # a threading.Event: requests wait until it is set
        self.got = []  # verified deliveries, in arrival order
        self.unverified = []
        self._changed = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.hold is not None:
            self.hold.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver._keep(self.path, dict(self.headers), raw)
                if receiver.hold is not None:
                    receiver.hold.wait(timeout=60)
                if receiver.delay:
                    threading.Event().wait(receiver.delay)
                self.send_response(receiver.status)
                if receiver.location:
                    self.send_header("Location", receiver.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        return Handler

    def _keep(self, path, headers, raw):
        received_at = time.time()
        try:
            message = self.verifier.verify(raw, headers)
        except WebhookVerificationError as error:
            with self._changed:
                self.unverified.append((headers, raw, str(error)))
            return
        delivery = {"path": path, "headers": {k.lower(): v for k, v in headers.items()},
                    "raw": raw, "message": message, "received_at": received_at}
        with self._changed:
            self.got.append(delivery)
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = 15.0) -> list[dict]:
        """The deliveries received, once there are at least ``count``."""
        with self._changed:
            self._changed.wait_for(lambda: len(self.got) >= count, timeout=timeout)
            got = list(self.got)
        assert len(got) >= count, f"expected {count} deliveries, got {len(got)}"
        assert not self.unverified, self.unverified
        return got

    def ids(self) -> Counter:
        """How many times each webhook-id arrived."""
        with self._changed:
            return Counter(delivery["headers"]["webhook-id"] for delivery in self.got)


def closed_url() -> str:
    """A URL where nothing listens: the connection is refused."""
    return f"http://127.0.0.1:{free_port()}/hooks"


# ---------------------------------------------------------------- the outbox


def deliveries(app) -> list[WebhookDelivery]:
    with app.app_context():
        return list(db.session.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))


def settled(app, count: int) -> bool:
    """Whether ``count`` deliveries are no longer pending."""
    return sum(row.status != "pending" for row in deliveries(app)) >= count


def add_event(app, event_type="user.updated") -> str:
    """An event recorded and committed as a service does outside a request (the CLI)."""
    return add_events(app, 1, event_type)[0]


def add_events(app, count: int, event_type="user.updated") -> list[str]:
    """``count`` events committed in one transaction (one NOTIFY)."""
    with app.app_context():
        ids = [events.record(event_type, user_id=None).id for _ in range(count)]
        db.session.commit()
    return ids


def metric_values(client) -> dict:
    """{(name, labels): value} of the webhook metrics of one GET /metrics."""
    text = client.get("/metrics").get_data(as_text=True)
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("authapi_webhook")
    }


class Clock:
    """The worker's time: now when made, then moved by the test."""

    def __init__(self):
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, seconds: float):
        self.now += timedelta(seconds=seconds)


def deliver(app, clock=None) -> tuple[Worker, Clock]:
    """One pass of a worker over what is due at ``clock`` (now by default)."""
    clock = clock or Clock()
    worker = Worker(app, clock=clock)
    worker.deliver_due()
    return worker, clock


def assert_no_secret(text: str):
    key = SECRET.removeprefix("whsec_")
    assert key not in text and key[:16] not in text


def wait_until(condition, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


# ---------------------------------------------------------------- the delivery process


def worker_command() -> list[str]:
    """The Procfile's worker line, run with this interpreter."""
    (line,) = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.startswith("worker:")]
    program, *args = line.partition(":")[2].split()
    assert program == "flask"
    return [sys.executable, "-m", "flask", *args]


class DeliveryProcess:
    """``flask --app wsgi webhooks run`` in a subprocess, its output in a file."""

    def __init__(self, env: dict, log_path: Path):
        self.env = {**os.environ, **env}
        self.log_path = log_path
        self.process = None

    def start(self):
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(worker_command(), cwd=ROOT, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        self.wait_for_log("webhook delivery started")
        return self

    def once(self) -> str:
        """``webhooks run --once``: its stdout."""
        result = subprocess.run(worker_command() + ["--once"], cwd=ROOT, env=self.env, capture_output=True,
                                text=True, timeout=60)
        with open(self.log_path, "a") as log:
            log.write(result.stdout + result.stderr)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def wait_for_log(self, text: str, timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while text not in self.log():
            assert self.process.poll() is None, self.log()
            assert time.monotonic() < deadline, f"{text!r} not logged: {self.log()}"
            time.sleep(0.05)

    def delivered_ids(self) -> set[str]:
        return set(DELIVERED_LINE.findall(self.log()))

    def stop(self):
        stop_process(self.process, timeout=15)


# ---------------------------------------------------------------- fixtures


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


@pytest.fixture
def app(make_app, receiver):
    """The app of ``client``, ``auth`` and ``runner``: webhooks to ``receiver``."""
    return make_app(WEBHOOK_URLS=receiver.url + "/hooks", **SETTINGS)
