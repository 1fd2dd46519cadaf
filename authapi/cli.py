"""Admin commands: ``flask --app wsgi users ...``, ``sessions purge``,
``mfa rotate-keys``, ``events purge``, and ``webhooks run`` / ``status``.

Each command calls the same service functions as the HTTP API, so the password
policy, revocation and the last-admin rule live in one place. Success prints
one line on stdout; a refusal prints one line on stderr and exits with status 1.
"""

import signal
from functools import wraps

import click
import redis
from flask import current_app
from flask.cli import AppGroup
from marshmallow import ValidationError
from sqlalchemy.exc import OperationalError

from . import errors
from .models import ROLES
from .schemas import AdminUserIn
from .services import admin, devices, events, mfa, recovery, sessions
from .webhooks import deliveries
from .webhooks.worker import Worker

ACTOR = "cli"

users_cli = AppGroup("users", help="Manage user accounts.")
sessions_cli = AppGroup("sessions", help="Manage login sessions.")
mfa_cli = AppGroup("mfa", help="Two-factor authentication.")
events_cli = AppGroup("events", help="The audit trail of security events.")
webhooks_cli = AppGroup("webhooks", help="Webhook delivery (Standard Webhooks).")


def _describe(details) -> str:
    return "; ".join(
        f"{field}: {' '.join(messages)}" for field, messages in (details or {}).items()
    )


def reports_errors(command):
    """Turn a refusal into one line on stderr and exit status 1."""

    @wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ValidationError as exc:
            message = _describe(exc.messages)
        except errors.APIError as exc:
            message = exc.message + (f" {_describe(exc.details)}" if exc.details else "")
        except (redis.ConnectionError, redis.TimeoutError, OperationalError) as exc:
            message = f"A backing service is unavailable ({type(exc).__name__}); nothing was changed."
        raise click.ClickException(message)

    return wrapper


def _check_role(role):
    if role is not None and role not in ROLES:
        raise errors.ValidationFailed(f"Unknown role {role!r}: use one of {', '.join(ROLES)}.")


password_option = click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    help="The password; prompted twice, hidden, when not given.",
)


@users_cli.command("create")
@click.argument("email")
@click.option("--username", required=True)
@click.option("--role", default="user", show_default=True, help="user or admin")
@click.option("--full-name", default=None)
@password_option
@reports_errors
def create_user(email, username, role, full_name, password):
    """Create an account (verified: an operator vouches for it)."""
    # The API's field rules for the email, username and role; the password
    # policy is the service's own (passwords.ensure_password_allowed).
    data = AdminUserIn(exclude=["password"]).load(
        {"email": email, "username": username, "role": role, "full_name": full_name, "is_verified": True}
    )
    user = admin.create_user(ACTOR, password=password, **data)
    click.echo(f"Created {user.role} {user.email} (id {user.id}, username {user.username}).")


@users_cli.command("list")
@click.option("--role", default=None, help="Only users with this role (user or admin).")
@click.option("--active/--inactive", "is_active", default=None, help="Only active or inactive users.")
@reports_errors
def list_users(role, is_active):
    """Print a table of users."""
    _check_role(role)
    page = admin.list_users(page=1, per_page=10**6, role=role, is_active=is_active)
    rows = [("ID", "EMAIL", "USERNAME", "ROLE", "ACTIVE", "VERIFIED", "CREATED")]
    rows += [
        (str(u.id), u.email, u.username, u.role, "yes" if u.is_active else "no",
         "yes" if u.is_verified else "no", u.created_at.strftime("%Y-%m-%d %H:%M"))
        for u in page.items
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    click.echo(f"{page.total} user(s)")


@users_cli.command("set-role")
@click.argument("email")
@click.argument("role")
@reports_errors
def set_role(email, role):
    """Give a user the role ROLE (user or admin)."""
    _check_role(role)
    user = admin.update_user(ACTOR, admin.get_user_by_email(email), role=role)
    click.echo(f"{user.email} is now {user.role}.")


@users_cli.command("activate")
@click.argument("email")
@reports_errors
def activate(email):
    """Let a user log in again."""
    user = admin.update_user(ACTOR, admin.get_user_by_email(email), is_active=True)
    click.echo(f"{user.email} is active.")


@users_cli.command("deactivate")
@click.argument("email")
@reports_errors
def deactivate(email):
    """Stop a user from logging in and end their sessions."""
    user = admin.update_user(ACTOR, admin.get_user_by_email(email), is_active=False)
    click.echo(f"{user.email} is deactivated; their sessions have ended.")


@users_cli.command("set-password")
@click.argument("email")
@password_option
@reports_errors
def set_password(email, password):
    """Set a user's password and end their sessions."""
    user = admin.get_user_by_email(email)
    admin.set_password(ACTOR, user, password)
    click.echo(f"Password of {user.email} set; their sessions have ended.")


@users_cli.command("delete")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@reports_errors
def delete_user(email, yes):
    """Delete a user and everything they hold."""
    user = admin.get_user_by_email(email)
    if not yes:
        click.confirm(f"Delete {user.email} (id {user.id})?", abort=True)
    admin.delete_user(ACTOR, user)
    click.echo(f"Deleted {email}.")


@users_cli.command("reset-mfa")
@click.argument("email")
@reports_errors
def reset_mfa(email):
    """Turn a user's two-factor authentication off (lost device); end their sessions."""
    user = admin.get_user_by_email(email)
    admin.reset_mfa(ACTOR, user)
    click.echo(f"Two-factor authentication of {user.email} is off; their sessions have ended.")


@sessions_cli.command("purge")
@reports_errors
def purge_sessions():
    """Delete the rows of expired sessions, of spent or expired one-time tokens
    and of void or expired device tokens."""
    removed_sessions = sessions.purge_expired_sessions()
    removed_tokens = recovery.purge_spent_tokens()
    removed_devices = devices.purge_unusable()
    click.echo(
        f"Purged {removed_sessions} expired sessions and {removed_tokens} one-time tokens. "
        f"Purged {removed_devices} void or expired device tokens."
    )


@mfa_cli.command("rotate-keys")
@reports_errors
def rotate_mfa_keys():
    """Re-encrypt every stored TOTP secret under the first key of
    MFA_ENCRYPTION_KEYS, so the older keys after it can be dropped."""
    count = mfa.reencrypt_secrets()
    click.echo(f"Re-encrypted the TOTP secrets of {count} accounts under the first key.")


@events_cli.command("purge")
@reports_errors
def purge_events():
    """Delete the security events older than EVENT_RETENTION_DAYS."""
    count = events.purge_expired()
    days = current_app.config["EVENT_RETENTION_DAYS"]
    click.echo(f"Purged {count} security events older than {days} days.")


@webhooks_cli.command("run")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@reports_errors
def run_webhooks(once):
    """The delivery process: POST each event of the outbox to its URL, retry
    with doubling backoff, until SIGTERM or SIGINT. Run one or more beside
    the web processes (the Procfile's worker)."""
    if not current_app.config["WEBHOOK_URLS"]:
        raise click.ClickException("WEBHOOK_URLS is not set: there is nothing to deliver.")
    worker = Worker(current_app._get_current_object())
    if once:
        made = worker.deliver_due()
        click.echo(f"Made {made} delivery attempts.")
        return
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, worker.stop)
    worker.run()


@webhooks_cli.command("status")
@reports_errors
def webhooks_status():
    """Print the pending, delivered and failed delivery counts."""
    counts = deliveries.status_counts()
    click.echo(
        f"Webhook deliveries: {counts['pending']} pending, {counts['delivered']} delivered, "
        f"{counts['failed']} failed."
    )


def register_commands(app):
    app.cli.add_command(users_cli)
    app.cli.add_command(sessions_cli)
    app.cli.add_command(mfa_cli)
    app.cli.add_command(events_cli)
    app.cli.add_command(webhooks_cli)
