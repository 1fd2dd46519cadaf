"""A webhook receiver for the tests: a real HTTP server on a free loopback
port that verifies every delivery with the ``standardwebhooks`` library's
``Webhook.verify``, as a receiver in production would, and keeps what it got.

It can be told to answer another status (``status``, ``location`` for a
redirect), to answer late (``delay`` seconds: a receiver that times out), or
to hold each request until the test lets it go (``hold``: a worker caught
mid-attempt). A closed port (``closed_url``) is a receiver that refuses
connections.
"""

import base64
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from .servers import free_port

SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


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
