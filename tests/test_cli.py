"""``flask --app wsgi users ...`` and ``sessions purge`` (API.md §6)."""

import subprocess
import sys

import pytest
import requests

from authapi.extensions import db
from authapi.models import User

from .conftest import PASSWORD, ROOT, Server, base_env, bearer


def invoke(runner, *args, input=None):
    return runner.invoke(args=list(args), input=input)


def user(app, email):
    with app.app_context():
        found = db.session.query(User).filter_by(email=email).one_or_none()
        if found is not None:
            db.session.expunge(found)
        return found


def create(runner, email="ops@example.com", username="ops", *extra):
    return invoke(runner, "users", "create", email, "--username", username, "--password", PASSWORD, *extra)


def test_create_prints_one_line_and_makes_a_verified_user(app, runner):
    result = create(runner, "ops@example.com", "ops", "--role", "admin")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().count("\n") == 0
    assert "ops@example.com" in result.stdout
    made = user(app, "ops@example.com")
    assert made.role == "admin" and made.is_verified and made.is_active


def test_create_prompts_twice_for_a_hidden_password(app, runner):
    result = invoke(runner, "users", "create", "ops@example.com", "--username", "ops",
                    input=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.stdout  # hidden input is not echoed
    assert user(app, "ops@example.com") is not None


def test_create_refuses_mismatched_confirmation(app, runner):
    result = invoke(runner, "users", "create", "ops@example.com", "--username", "ops",
                    input=f"{PASSWORD}\nsomething else entirely\n")
    assert result.exit_code != 0
    assert user(app, "ops@example.com") is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["users", "create", "ops@example.com", "--username", "ops", "--password", "password"], "password"),
        (["users", "create", "not-an-email", "--username", "ops", "--password", PASSWORD], "email"),
        (["users", "create", "ops@example.com", "--username", "o", "--password", PASSWORD], "username"),
        (["users", "create", "ops@example.com", "--username", "ops", "--role", "god",
          "--password", PASSWORD], "role"),
        (["users", "list", "--role", "god"], "god"),
        (["users", "set-role", "nobody@example.com", "admin"], "nobody@example.com"),
        (["users", "set-role", "taken@example.com", "god"], "god"),
        (["users", "activate", "nobody@example.com"], "nobody@example.com"),
        (["users", "deactivate", "nobody@example.com"], "nobody@example.com"),
        (["users", "set-password", "nobody@example.com", "--password", PASSWORD], "nobody@example.com"),
        (["users", "set-password", "taken@example.com", "--password", "short"], "password"),
        (["users", "delete", "nobody@example.com", "--yes"], "nobody@example.com"),
        (["users", "create", "TAKEN@example.com", "--username", "fresh", "--password", PASSWORD], "taken"),
        (["users", "create", "fresh@example.com", "--username", "TAKEN", "--password", PASSWORD], "taken"),
    ],
)
def test_refusals_exit_1_with_one_line_on_stderr(app, runner, args, message):
    assert create(runner, "taken@example.com", "taken").exit_code == 0
    result = invoke(runner, *args)
    assert result.exit_code == 1
    assert message.lower() in result.stderr.lower()
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_list_prints_a_table_with_full_emails(runner):
    create(runner, "a.very.long.address@example.com", "alice")
    create(runner, "bob@example.com", "bob", "--role", "admin")
    result = invoke(runner, "users", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["ID", "EMAIL", "USERNAME", "ROLE", "ACTIVE", "VERIFIED", "CREATED"]
    assert "a.very.long.address@example.com" in result.stdout
    assert lines[-1] == "2 user(s)"


def test_list_filters(runner):
    create(runner, "alice@example.com", "alice")
    create(runner, "bob@example.com", "bob", "--role", "admin")
    invoke(runner, "users", "deactivate", "alice@example.com")
    admins = invoke(runner, "users", "list", "--role", "admin").stdout
    inactive = invoke(runner, "users", "list", "--inactive").stdout
    active = invoke(runner, "users", "list", "--active").stdout
    assert "bob@" in admins and "alice@" not in admins
    assert "alice@" in inactive and "bob@" not in inactive
    assert "bob@" in active and "alice@" not in active


def test_set_role_revokes_tokens(app, client, runner, auth):
    _, pair = auth.user(username="alice", email="alice@example.com")
    result = invoke(runner, "users", "set-role", "alice@example.com", "admin")
    assert result.exit_code == 0 and "admin" in result.stdout
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 401
    assert user(app, "alice@example.com").role == "admin"


def test_deactivate_and_activate(app, client, runner, auth):
    _, pair = auth.user(username="alice", email="alice@example.com")
    assert invoke(runner, "users", "deactivate", "alice@example.com").exit_code == 0
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 401
    assert client.post("/auth/login", json={"username": "alice", "password": PASSWORD}).status_code == 401
    assert invoke(runner, "users", "activate", "alice@example.com").exit_code == 0
    auth.login("alice")


def test_set_password_ends_sessions(client, runner, auth):
    _, pair = auth.user(username="alice", email="alice@example.com")
    new = "an operator chosen passphrase"
    result = invoke(runner, "users", "set-password", "alice@example.com", input=f"{new}\n{new}\n")
    assert result.exit_code == 0, result.output
    assert client.get("/users/me", headers=bearer(pair["access_token"])).status_code == 401
    auth.login("alice", new)


def test_delete_asks_for_confirmation(app, runner, auth):
    auth.register(username="alice", email="alice@example.com")
    declined = invoke(runner, "users", "delete", "alice@example.com", input="n\n")
    assert declined.exit_code != 0
    assert user(app, "alice@example.com") is not None
    accepted = invoke(runner, "users", "delete", "alice@example.com", input="y\n")
    assert accepted.exit_code == 0
    assert user(app, "alice@example.com") is None


def test_last_admin_rule_holds_in_the_cli(app, runner):
    create(runner, "root@example.com", "root", "--role", "admin")
    for args in (["set-role", "root@example.com", "user"], ["deactivate", "root@example.com"],
                 ["delete", "root@example.com", "--yes"]):
        result = invoke(runner, "users", *args)
        assert result.exit_code == 1
        assert "last active admin" in result.stderr
    assert user(app, "root@example.com").role == "admin"


def test_first_admin_from_a_real_cli_on_a_fresh_database(tmp_path, redis_url):
    """An operator's first steps: migrate, create the admin, log in over HTTP."""
    env = base_env(f"sqlite:///{tmp_path / 'fresh.db'}", redis_url)
    server = Server(env, tmp_path / "gunicorn.log", workers=2).migrate()
    created = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "users", "create", "admin@example.com",
         "--username", "admin", "--role", "admin", "--password", PASSWORD],
        cwd=ROOT, env=server.env, capture_output=True, text=True, timeout=60,
    )
    assert created.returncode == 0, created.stderr
    assert created.stdout.strip() == "Created admin admin@example.com (id 1, username admin)."
    server.start()
    try:
        pair = requests.post(server.url + "/auth/login",
                             json={"username": "admin@example.com", "password": PASSWORD}, timeout=10)
        assert pair.status_code == 200
        listing = requests.get(server.url + "/users", headers=bearer(pair.json()["access_token"]), timeout=10)
        assert listing.status_code == 200 and listing.json()["total"] == 1
    finally:
        server.stop()
