"""WSGI entry point: ``gunicorn wsgi:app``, ``flask --app wsgi ...``."""

import sys

from authapi import create_app
from config import ConfigError

try:
    app = create_app()
except ConfigError as exc:
    # One clear line for the operator instead of a traceback.
    sys.exit(f"authapi: configuration error: {exc}")
