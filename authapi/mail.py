"""Outgoing email, delivered off the request path, and the cap on how often
one address is mailed.

``MAIL_BACKEND=smtp`` sends through smtplib; ``console`` writes the message to
the log (development only: it is the one place a token may reach a log, so
production refuses it). Work handed to ``run_in_background`` runs on a small
per-process thread pool inside an app context, so an SMTP server that is slow
or down never delays, changes or fails the HTTP answer.

With ``SMTP_STARTTLS`` or ``SMTP_SSL`` the server's certificate and host name
are verified (the system's CAs, or ``SMTP_CA_FILE``) before anything else is
said: a server that fails gets neither the password nor the message.

``reserve`` is the resend cap (API.md §4): one email of a purpose per address
per ``EMAIL_RESEND_SECONDS``, claimed in the shared store.
"""

import logging
import os
import smtplib
import ssl
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from email.message import EmailMessage

from flask import current_app

from .digests import digest
from .extensions import store

log = logging.getLogger("authapi.mail")

_executor: ThreadPoolExecutor | None = None
_executor_pid: int | None = None
_executor_lock = threading.Lock()
_pending: set[Future] = set()


def _get_executor() -> ThreadPoolExecutor:
    global _executor, _executor_pid
    # gunicorn forks after the app is loaded: threads do not survive a fork,
    # so each worker process starts its own pool.
    with _executor_lock:
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="authapi-mail")
            _executor_pid = os.getpid()
        return _executor


def run_in_background(function, *args, **kwargs):
    """Run ``function`` in an app context on the mail pool; failures are logged."""
    app = current_app._get_current_object()

    def job():
        with app.app_context():
            try:
                function(*args, **kwargs)
            except Exception:
                log.exception("background job %s failed", function.__name__)

    future = _get_executor().submit(job)
    with _executor_lock:
        _pending.add(future)
    future.add_done_callback(_forget)
    return future


def _forget(future: Future) -> None:
    with _executor_lock:
        _pending.discard(future)


def wait_for_background_jobs(timeout: float = 30) -> None:
    """Let queued jobs finish (worker shutdown, tests)."""
    with _executor_lock:
        pending = list(_pending)
    wait(pending, timeout=timeout)


def build_message(to: str, subject: str, body: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = current_app.config["MAIL_FROM"]
    message["To"] = to
    message["Subject"] = subject
    # Plain 7bit when the text allows it: quoted-printable would break the
    # link across lines (and write "=3D" for "=") in the raw message.
    message.set_content(body, cte="7bit" if body.isascii() else None)
    return message


def send(message: EmailMessage) -> None:
    """Deliver now with the configured backend. Raises on SMTP failure."""
    config = current_app.config
    if config["MAIL_BACKEND"] == "console":
        log.info("email (console backend, not sent):\n%s", message.as_string())
        return
    if config["MAIL_BACKEND"] != "smtp":
        raise ValueError(f"unknown MAIL_BACKEND {config['MAIL_BACKEND']!r}")
    with _connect(config) as smtp:
        if config["SMTP_STARTTLS"]:
            # Raises rather than going on in plain text when the server does
            # not offer STARTTLS or fails the certificate check: the password
            # below is never sent unencrypted or to an unverified server.
            smtp.starttls(context=_tls_context(config))
        if config["SMTP_USERNAME"]:
            smtp.login(config["SMTP_USERNAME"], config["SMTP_PASSWORD"] or "")
        smtp.send_message(message)


def _connect(config) -> smtplib.SMTP:
    host, port, timeout = config["SMTP_HOST"], config["SMTP_PORT"], config["SMTP_TIMEOUT"]
    if config["SMTP_SSL"]:  # implicit TLS, verified in the handshake
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=_tls_context(config))
    return smtplib.SMTP(host, port, timeout=timeout)


def _tls_context(config) -> ssl.SSLContext:
    # Certificate and host name required (create_default_context's defaults);
    # with a CA file, only its CAs: a private mail relay's own CA.
    return ssl.create_default_context(cafile=config["SMTP_CA_FILE"])


def deliver(message: EmailMessage) -> None:
    """Send, logging (never raising) a failure: the caller's work is done."""
    try:
        send(message)
    except (OSError, smtplib.SMTPException) as exc:
        # Not the exception text: it can hold the recipient, and the body a token.
        # A failed certificate check says why (issuer, host name): no secret.
        log.error(
            "email delivery failed: %s %s", type(exc).__name__,
            getattr(exc, "verify_message", None) or getattr(exc, "smtp_code", ""),
        )
    else:
        log.info("email sent: %s", message["Subject"])


# ---------------------------------------------------------------- the resend cap


def resend_key(address: str, purpose: str) -> str:
    """The store key of the last email of ``purpose`` to ``address``: a prefix
    of its own and a digest, so nothing a client types reaches another key."""
    return f"authapi:email-sent:{purpose}:{digest(address.lower())}"


def reserve(address: str, purpose: str) -> float | None:
    """Claim the one email of ``purpose`` that ``address`` may get per
    ``EMAIL_RESEND_SECONDS``. Returns None when claimed (send it), or the Unix
    time the earlier claim ends (send nothing).

    One atomic store operation, made whether or not an account has the
    address, so neither the answer nor its timing says which. Raises the
    store's errors (503 in a request): without the store no capped email goes
    out, as no login is checked."""
    seconds = current_app.config["EMAIL_RESEND_SECONDS"]
    if seconds <= 0:
        return None
    until = time.time() + seconds
    held = store.reserve(resend_key(address, purpose), repr(until), seconds)
    if held is None:
        return None
    try:
        return float(held)
    except ValueError:  # not ours to read: the claim lasts at most its TTL
        return until
