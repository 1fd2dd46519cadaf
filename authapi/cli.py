"""Admin commands: ``flask --app wsgi sessions ...`` (and ``users ...``)."""

import click
from flask.cli import AppGroup

from .services import recovery, sessions

sessions_cli = AppGroup("sessions", help="Manage login sessions.")


@sessions_cli.command("purge")
def purge_sessions():
    """Delete the rows of expired sessions and of spent or expired one-time tokens."""
    removed_sessions = sessions.purge_expired_sessions()
    removed_tokens = recovery.purge_spent_tokens()
    click.echo(f"Purged {removed_sessions} expired sessions and {removed_tokens} one-time tokens.")


def register_commands(app):
    app.cli.add_command(sessions_cli)
