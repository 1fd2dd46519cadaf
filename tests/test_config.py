"""Configuration (API.md §5) and the operator's commands (§6): start-up checks in
real subprocesses with a controlled environment, URL mapping, migrations on
fresh databases through the CLI, and the gunicorn settings."""

import os
import runpy
import subprocess
import sys
import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config as AlembicConfig
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

import config
from config.page import markdown
from config.table import GUNICORN_SETTINGS, SETTINGS
from authapi import models  # noqa: F401  registers the tables on the metadata
from authapi.extensions import db

from .conftest import PG_ADMIN_URL, ROOT, free_port

SECRET = "s" * 40
JWT_SECRET = "j" * 40
CLI_TIMEOUT = 60


def clean_env(**settings) -> dict:
    """Only what a process needs to run, plus ``settings``: nothing of ours leaks
    in from the environment the tests run in."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    env.update({k: str(v) for k, v in settings.items() if v is not None})
    return env


def production_env(tmp_path, **overrides) -> dict:
    """Every setting production requires (nothing is contacted at import time),
    with ``overrides``; an override of None removes the variable."""
    settings = {
        "AUTHAPI_ENV": "production",
        "SECRET_KEY": SECRET,
        "JWT_SECRET_KEY": JWT_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
        "REDIS_URL": "redis://127.0.0.1:6379/15",
    }
    settings.update(overrides)
    return clean_env(**settings)


def run(args, env, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


def import_wsgi(env, code="import wsgi") -> subprocess.CompletedProcess:
    return run(["-c", code], env)


def flask_cli(env, *args, cwd=ROOT) -> subprocess.CompletedProcess:
    return run(["-m", "flask", "--app", "wsgi", *args], env, cwd=cwd)


def assert_refused_with_one_line(result, *words):
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


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


# ---------------------------------------------------------------- production refuses


@pytest.mark.parametrize(
    "overrides, variable",
    [
        ({"SECRET_KEY": None}, "SECRET_KEY"),
        ({"SECRET_KEY": ""}, "SECRET_KEY"),
        ({"SECRET_KEY": "s" * 31}, "SECRET_KEY"),
        ({"JWT_SECRET_KEY": None}, "JWT_SECRET_KEY"),
        ({"JWT_SECRET_KEY": "j" * 31}, "JWT_SECRET_KEY"),
        ({"DATABASE_URL": None}, "DATABASE_URL"),
        ({"REDIS_URL": None}, "REDIS_URL"),
        ({"MAIL_BACKEND": "console"}, "MAIL_BACKEND"),
    ],
    ids=[
        "secret-key-missing",
        "secret-key-empty",
        "secret-key-31-bytes",
        "jwt-secret-key-missing",
        "jwt-secret-key-31-bytes",
        "database-url-missing",
        "redis-url-missing",
        "mail-backend-console",
    ],
)
def test_production_refuses_to_start_with_one_line_naming_the_setting(
    tmp_path, overrides, variable
):
    result = import_wsgi(production_env(tmp_path, **overrides))

    assert_refused_with_one_line(result, variable)


@pytest.mark.parametrize("entry_point", ["flask-db-upgrade", "gunicorn"])
def test_production_refusal_is_one_line_from_the_operator_commands(tmp_path, entry_point):
    env = production_env(tmp_path, REDIS_URL=None)
    if entry_point == "gunicorn":
        # gunicorn.conf.py makes a metrics directory unless given one.
        env.update(PORT=str(free_port()), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
        # It would serve (and time out here) if it did not refuse.
        result = run(["-m", "gunicorn", "wsgi:app"], env)
    else:
        result = flask_cli(env, "db", "upgrade")

    assert_refused_with_one_line(result, "REDIS_URL")
    assert not (tmp_path / "prod.db").exists()


def test_production_starts_with_every_required_setting(tmp_path, redis_url):
    env = production_env(tmp_path, REDIS_URL=redis_url)

    result = import_wsgi(
        env, "import wsgi; c = wsgi.app.config; print(c['AUTHAPI_ENV'], c['MAIL_BACKEND'])"
    )

    assert result.returncode == 0, result.stderr
    # Without MAIL_BACKEND production sends real email, never to the log.
    assert result.stdout.split() == ["production", "smtp"]


def test_production_starts_while_redis_is_down(tmp_path):
    env = production_env(tmp_path, REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    result = import_wsgi(env)

    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "secret",
    ["k" * 32, "é" * 16],  # 32 bytes each; the second only 16 characters
    ids=["32-ascii-bytes", "32-utf8-bytes"],
)
def test_production_accepts_secrets_of_exactly_32_bytes(tmp_path, secret):
    environ = production_env(tmp_path, SECRET_KEY=secret, JWT_SECRET_KEY=secret)

    loaded = config.load_config(environ=environ)

    assert (loaded.SECRET_KEY, loaded.JWT_SECRET_KEY) == (secret, secret)


def test_production_refuses_secret_of_32_characters_but_fewer_bytes(tmp_path):
    environ = production_env(tmp_path, SECRET_KEY="é" * 15 + "a")  # 31 bytes

    with pytest.raises(config.ConfigError, match="SECRET_KEY"):
        config.load_config(environ=environ)


# ---------------------------------------------------------------- bad values


def test_unknown_environment_name_is_refused_with_one_line(tmp_path):
    env = clean_env(AUTHAPI_ENV="nonsense", DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}")

    result = import_wsgi(env)

    assert_refused_with_one_line(result, "AUTHAPI_ENV", "nonsense")


def test_bad_integer_is_refused_with_one_line_naming_the_variable(tmp_path):
    env = clean_env(
        AUTHAPI_ENV="development",
        DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}",
        ACCESS_TOKEN_TTL="abc",
    )

    result = import_wsgi(env)

    assert_refused_with_one_line(result, "ACCESS_TOKEN_TTL", "abc")


# What wsgi prints is the ConfigError's message (shown above for one case);
# the other bad values are checked in-process, which is much faster.
@pytest.mark.parametrize(
    "variable, value",
    [
        ("REFRESH_TOKEN_TTL", "1.5"),
        ("ACCESS_TOKEN_TTL", "0"),
        ("ACCESS_TOKEN_TTL", "-60"),
        ("MAX_CONTENT_LENGTH", "64k"),
        ("SMTP_PORT", "smtp"),
        ("RATELIMIT_ENABLED", "maybe"),
        ("PASSWORD_MIN_LENGTH", "0"),
        ("LOG_FORMAT", "xml"),
    ],
)
def test_bad_value_raises_config_error_naming_the_variable(tmp_path, variable, value):
    environ = clean_env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.db'}", **{variable: value})

    with pytest.raises(config.ConfigError) as refused:
        config.load_config("development", environ)

    message = str(refused.value)
    assert variable in message
    assert len(message.splitlines()) == 1


@pytest.mark.parametrize(
    "variable, value",
    [
        ("LOG_LEVEL", "verbose"),
        ("DATABASE_URL", "localhost/authapi"),
        ("DATABASE_URL", "nosuchdb://user:pw@host/db"),
        ("REDIS_URL", "localhost:6379"),
    ],
)
def test_malformed_setting_is_refused_with_one_line_naming_it(tmp_path, variable, value):
    settings = {"AUTHAPI_ENV": "development", "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    env = clean_env(**{**settings, variable: value})

    result = import_wsgi(env)

    assert_refused_with_one_line(result, variable)


def test_production_refuses_unknown_mail_backend(tmp_path):
    environ = production_env(tmp_path, MAIL_BACKEND="smpt")

    with pytest.raises(config.ConfigError, match="MAIL_BACKEND"):
        config.load_config(environ=environ)


@pytest.mark.parametrize("variable", ["SECRET_KEY", "JWT_SECRET_KEY"])
def test_production_refusal_does_not_echo_a_short_secret(tmp_path, variable):
    secret = "short-but-real-secret"
    environ = production_env(tmp_path, **{variable: secret})

    with pytest.raises(config.ConfigError) as refused:
        config.load_config(environ=environ)

    # The message goes to the deployment log.
    assert variable in str(refused.value)
    assert secret not in str(refused.value)


# ---------------------------------------------------------------- the table and its page


def test_configuration_page_is_the_one_made_from_the_table():
    page = (ROOT / "docs" / "configuration.md").read_text()

    assert page == markdown(), "run: python -m config.page > docs/configuration.md"


def test_every_setting_is_read_into_the_app_config_under_one_key():
    keys = [setting.key for setting in SETTINGS]

    assert len(keys) == len(set(keys))
    assert set(keys) <= set(vars(config.load_config("testing", {})))


def test_trusted_hosts_are_applied_by_authapi_not_by_flask():
    # API.md §5 exempts /health/*, which Flask's own TRUSTED_HOSTS would not.
    loaded = config.load_config("testing", {"TRUSTED_HOSTS": "api.example.com, .example.org"})

    assert loaded.AUTHAPI_TRUSTED_HOSTS == ["api.example.com", ".example.org"]
    assert loaded.TRUSTED_HOSTS is None


# ---------------------------------------------------------------- database URLs


@pytest.mark.parametrize(
    "given, expected",
    [
        ("postgres://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("postgresql://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        (
            "postgres://u:p@h:5433/db?sslmode=require",
            "postgresql+psycopg://u:p@h:5433/db?sslmode=require",
        ),
        ("postgresql+psycopg://u:p@h/db", "postgresql+psycopg://u:p@h/db"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
    ],
)
def test_database_url_maps_to_the_installed_driver(given, expected):
    assert config.database_url(given) == expected


def test_database_url_makes_relative_sqlite_path_absolute_under_cwd(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    url = config.database_url("sqlite:///data/app.db")

    assert url == f"sqlite:///{tmp_path / 'data' / 'app.db'}"
    assert (tmp_path / "data").is_dir()


def test_database_url_keeps_absolute_sqlite_path(tmp_path):
    url = f"sqlite:///{tmp_path / 'abs' / 'app.db'}"

    assert config.database_url(url) == url


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


# ---------------------------------------------------------------- gunicorn.conf.py


def gunicorn_settings(monkeypatch, tmp_path, **environ) -> dict:
    for name in ("AUTHAPI_ENV", "REDIS_URL", "WEB_CONCURRENCY", "PORT", "LOG_FORMAT"):
        monkeypatch.delenv(name, raising=False)
    # The file exports a metrics directory of its own otherwise; monkeypatch
    # takes this one away again after the test.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    for name, value in environ.items():
        monkeypatch.setenv(name, str(value))
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"))


@pytest.mark.parametrize("environment", [None, "development", "testing"])
def test_gunicorn_serves_one_worker_without_redis(monkeypatch, tmp_path, capsys, environment):
    environ = {"WEB_CONCURRENCY": 4}
    if environment:
        environ["AUTHAPI_ENV"] = environment

    settings = gunicorn_settings(monkeypatch, tmp_path, **environ)

    # The in-process revocation store is per process: a second worker would
    # not see a logout served by the first.
    assert settings["workers"] == 1
    assert "REDIS_URL" in capsys.readouterr().err


def test_gunicorn_uses_web_concurrency_with_redis(monkeypatch, tmp_path):
    settings = gunicorn_settings(
        monkeypatch,
        tmp_path,
        AUTHAPI_ENV="development",
        REDIS_URL="redis://127.0.0.1:6379/0",
        WEB_CONCURRENCY=3,
    )

    assert settings["workers"] == 3


def test_gunicorn_defaults_to_two_workers_with_redis(monkeypatch, tmp_path):
    settings = gunicorn_settings(monkeypatch, tmp_path, REDIS_URL="redis://127.0.0.1:6379/0")

    assert settings["workers"] == 2


def test_gunicorn_defaults_are_the_ones_the_configuration_page_lists(monkeypatch, tmp_path):
    listed = {setting.name: setting.default for setting in GUNICORN_SETTINGS}
    monkeypatch.delenv("GUNICORN_THREADS", raising=False)

    settings = gunicorn_settings(monkeypatch, tmp_path, REDIS_URL="redis://127.0.0.1:6379/0")

    assert settings["bind"] == f"0.0.0.0:{listed['PORT']}"
    assert settings["workers"] == int(listed["WEB_CONCURRENCY"])
    assert settings["threads"] == int(listed["GUNICORN_THREADS"])


@pytest.mark.parametrize("port, bind", [(None, "0.0.0.0:8000"), (5123, "0.0.0.0:5123")])
def test_gunicorn_binds_to_port(monkeypatch, tmp_path, port, bind):
    environ = {"PORT": port} if port else {}

    settings = gunicorn_settings(monkeypatch, tmp_path, **environ)

    assert settings["bind"] == bind


def test_gunicorn_trusts_no_forwarding_headers(monkeypatch, tmp_path):
    # API.md §5: only ProxyFix (PROXY_FIX_X_FOR) decides which proxies to trust.
    settings = gunicorn_settings(monkeypatch, tmp_path)

    assert settings["forwarded_allow_ips"] == ""
    assert settings["secure_scheme_headers"] == {}
