"""The processes the tests start and talk to: a real gunicorn, an SMTP inbox,
a private Redis or PostgreSQL to kill (nginx is in nginx_server.py, the browser
in browser.py).

Fixtures live in conftest.py; these are the plain classes they build on, so a
test module can also start one of its own. Nothing here talks to the app's
code: each process is configured only by its environment or its config file.
"""

import asyncio
import email
import email.policy
import os
from contextlib import contextmanager
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
import requests

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"


def require_service(name: str, problem: str | None):
    """Skip (laptop) or fail (CI) when a backing service is missing."""
    if problem is None:
        return
    message = f"{name} is unavailable: {problem}"
    if IN_CI:
        pytest.fail(f"{message} (CI=true: services are required)", pytrace=False)
    pytest.skip(message)


def require_program(found: str | None, message: str) -> str:
    """The path of a program the test runs; skip (laptop) or fail (CI) without it."""
    if found is None:
        if IN_CI:
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return found


def base_env(database_url: str, redis_url: str | None, **extra) -> dict:
    """The environment of a testing app (or gunicorn) on these backends."""
    env = {
        "AUTHAPI_ENV": "testing",
        "DATABASE_URL": database_url,
        "SECRET_KEY": "test-secret-key-" + "x" * 32,
        "JWT_SECRET_KEY": "test-jwt-secret-key-" + "y" * 32,
        "RATELIMIT_ENABLED": "false",
    }
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.update({k: str(v) for k, v in extra.items()})
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(process, timeout: float):
    """Terminate, then kill what does not exit within ``timeout`` seconds."""
    if process and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()


# ---------------------------------------------------------------- gunicorn


class Server:
    """``gunicorn wsgi:app`` in a subprocess, configured only by environment."""

    def __init__(self, env: dict, log_path: Path, workers: int = 4):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, **env}
        self.workers = workers
        self.log_path = log_path
        self.process = None

    def migrate(self):
        # Exactly as an operator would.
        subprocess.run(
            [sys.executable, "-m", "flask", "--app", "wsgi", "db", "upgrade"],
            cwd=ROOT, env=self.env, check=True, capture_output=True,
        )
        return self

    def start(self):
        log = open(self.log_path, "w")
        self.process = subprocess.Popen(
            [
                sys.executable, "-m", "gunicorn", "wsgi:app",
                "--bind", f"127.0.0.1:{self.port}",
                "--workers", str(self.workers),
                "--worker-class", "gthread", "--threads", "4",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()}")
            try:
                requests.get(self.url + "/auth/sessions", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("gunicorn did not start in 30 s")

    def stop(self):
        stop_process(self.process, timeout=15)


# ---------------------------------------------------------------- SMTP


class Inbox:
    """An aiosmtpd handler that keeps what it receives; ``delay`` slows it down."""

    def __init__(self):
        self.messages = []
        self.delay = 0.0
        self.port = None
        self._changed = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        if self.delay:
            await asyncio.sleep(self.delay)
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, to, subject=None, count=1, timeout=10.0):
        """The messages to ``to`` (and ``subject``), once there are ``count``."""

        def matching():
            return [
                m for m in self.messages
                if m["To"] == to and (subject is None or m["Subject"] == subject)
            ]

        with self._changed:
            self._changed.wait_for(lambda: len(matching()) >= count, timeout=timeout)
            found = matching()
        assert len(found) >= count, f"expected {count} email(s) to {to}, got {len(found)}"
        return found


TOKEN_IN_LINK = re.compile(r"token=([A-Za-z0-9_\-]+)")


@contextmanager
def running_inbox():
    """A real SMTP server (aiosmtpd) on a free loopback port: its Inbox."""
    from aiosmtpd.controller import Controller

    inbox = Inbox()
    inbox.port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=inbox.port)
    controller.start()
    try:
        yield inbox
    finally:
        controller.stop()


def token_from(message) -> str:
    """The one-time token in the link of an email the app sent."""
    body = message.get_body(preferencelist=("plain",)).get_content()
    match = TOKEN_IN_LINK.search(body)
    assert match, body
    return match.group(1)


# ---------------------------------------------------------------- Redis and PostgreSQL to kill


class PrivateRedis:
    """A redis-server of the test's own, on its own port, to kill."""

    def __init__(self):
        if not shutil.which("redis-server"):
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def kill(self):
        self.process.kill()
        self.process.wait()

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def postgres_bin() -> Path | None:
    """The directory holding initdb and pg_ctl, if PostgreSQL's programs are here."""
    found = shutil.which("initdb")
    candidates = [Path(found).resolve().parent] if found else []
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (initdb on a free port), so the
    test can stop and start it without touching the shared one."""

    def __init__(self, base: Path):
        self.bin = postgres_bin()
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        # PostgreSQL refuses to run as root.
        self.prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args):
        subprocess.run(self.prefix + list(args), check=True, capture_output=True, timeout=60)

    def init(self):
        if self.prefix:
            shutil.chown(self.base, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")
        return self

    def pg_ctl(self, *args):
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.base / "log"),
                  "-o", f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off", *args)

