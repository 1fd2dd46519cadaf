"""Migrations (API.md §6 ``flask db upgrade``) on fresh databases through the
real CLI: a Heroku-style URL, a relative SQLite path, down to base and up
again, and a migrated schema that matches the models."""

import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from authapi import models  # noqa: F401  registers the tables on the metadata
from authapi.extensions import db

from .commands import clean_env, flask_cli, production_env
from .conftest import PG_ADMIN_URL, ROOT


def migrations_head() -> str:
    alembic_config = AlembicConfig()
    alembic_config.set_main_option("script_location", str(ROOT / "migrations"))
    return ScriptDirectory.from_config(alembic_config).get_current_head()


# ---------------------------------------------------------------- fresh databases


@pytest.fixture
def fresh_postgres(postgres_url):
    """A new, empty PostgreSQL database: (Heroku-style URL, SQLAlchemy URL).
    Dropped afterwards."""
    name = f"authapi_cfg_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(PG_ADMIN_URL).set(database=name)
    heroku = url.set(drivername="postgres").render_as_string(hide_password=False)
    yield heroku, url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_database(request, tmp_path):
    """A new, empty database of each kind: (DATABASE_URL, SQLAlchemy URL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.db'}"
        return url, url
    return request.getfixturevalue("fresh_postgres")


def with_connection(url, what):
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return what(conn)
    finally:
        engine.dispose()


def table_names(url) -> set[str]:
    return set(with_connection(url, lambda conn: sa.inspect(conn).get_table_names()))


def alembic_versions(url) -> list[str]:
    return with_connection(
        url, lambda conn: list(conn.scalars(sa.text("SELECT version_num FROM alembic_version")))
    )


# ---------------------------------------------------------------- migrations


def test_heroku_style_postgres_url_migrates_end_to_end(fresh_postgres, redis_url, tmp_path):
    heroku_url, sqlalchemy_url = fresh_postgres
    assert heroku_url.startswith("postgres://")
    # The release step of the Procfile, as a platform runs it.
    env = production_env(tmp_path, DATABASE_URL=heroku_url, REDIS_URL=redis_url)

    result = flask_cli(env, "db", "upgrade")

    assert result.returncode == 0, result.stderr
    assert {"users", "sessions", "alembic_version"} <= table_names(sqlalchemy_url)
    assert alembic_versions(sqlalchemy_url) == [migrations_head()]


def test_migrations_apply_to_a_fresh_relative_sqlite_file(tmp_path):
    # Run from elsewhere, so the relative path is resolved against this cwd.
    env = clean_env(
        AUTHAPI_ENV="development", DATABASE_URL="sqlite:///var/fresh.db", PYTHONPATH=ROOT
    )

    result = flask_cli(env, "db", "upgrade", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    url = f"sqlite:///{tmp_path / 'var' / 'fresh.db'}"
    assert {"users", "sessions", "alembic_version"} <= table_names(url)
    assert alembic_versions(url) == [migrations_head()]


def test_migrations_downgrade_to_base_and_upgrade_again(fresh_database, tmp_path):
    database_url, sqlalchemy_url = fresh_database
    env = clean_env(AUTHAPI_ENV="testing", DATABASE_URL=database_url)
    assert flask_cli(env, "db", "upgrade").returncode == 0

    down = flask_cli(env, "db", "downgrade", "base")
    assert down.returncode == 0, down.stderr
    assert table_names(sqlalchemy_url) <= {"alembic_version"}
    assert alembic_versions(sqlalchemy_url) == []

    up = flask_cli(env, "db", "upgrade")
    assert up.returncode == 0, up.stderr
    assert {"users", "sessions"} <= table_names(sqlalchemy_url)
    assert alembic_versions(sqlalchemy_url) == [migrations_head()]


def test_migrated_postgres_schema_matches_the_models(fresh_postgres):
    heroku_url, sqlalchemy_url = fresh_postgres
    result = flask_cli(clean_env(AUTHAPI_ENV="testing", DATABASE_URL=heroku_url), "db", "upgrade")
    assert result.returncode == 0, result.stderr

    def differences(conn):
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, db.metadata)

    assert with_connection(sqlalchemy_url, differences) == []
