"""The audit trail of passkeys (API.md §9, §10): passkey.added and
passkey.removed with the passkey's id and name, and a passkey login's
login.succeeded or login.failed."""

from sqlalchemy import update

from authapi.extensions import db
from authapi.models import User

from .authenticator import SoftwareAuthenticator
from .clients import bearer
from .events_helpers import one, stored
from .test_passkeys import app, enrolled, login, register  # noqa: F401 (fixtures)


def test_adding_and_removing_a_passkey_are_recorded(app, client, auth):
    user, pair = auth.user()
    authenticator = SoftwareAuthenticator()
    options = client.post("/auth/passkeys/register/options", headers=bearer(pair["access_token"])).get_json()
    created = client.post("/auth/passkeys/register", headers=bearer(pair["access_token"]),
                          json={"credential": authenticator.create(options), "name": "Laptop"})
    assert created.status_code == 201, created.get_json()
    added = one(app, "passkey.added")
    assert added["user_id"] == added["actor_id"] == user["id"]
    assert added["data"] == {"passkey_id": authenticator.id, "name": "Laptop"}
    deleted = client.delete(f"/auth/passkeys/{authenticator.id}", headers=bearer(pair["access_token"]))
    assert deleted.status_code == 204
    removed = one(app, "passkey.removed")
    assert removed["data"] == added["data"] and removed["actor_id"] == user["id"]


def test_a_refused_registration_records_nothing(app, client, auth):
    _, pair = auth.user()
    refused = register(client, pair["access_token"], SoftwareAuthenticator(), origin="https://evil.example")
    assert refused.status_code == 422
    assert stored(app, type="passkey.added") == []


def test_a_passkey_login_is_recorded(app, client, enrolled):
    user, _, authenticator = enrolled
    signed_in = login(client, authenticator)
    assert signed_in.status_code == 200
    methods = [event["data"]["method"] for event in stored(app, type="login.succeeded", user_id=user["id"])]
    assert methods == ["password", "passkey"]  # the fixture's own login, then this one


def test_refused_passkey_logins_are_recorded_with_their_reason(app, client, enrolled):
    user, _, authenticator = enrolled
    assert login(client, SoftwareAuthenticator()).status_code == 401
    unknown = one(app, "login.failed", user_id=None)
    assert unknown["data"] == {"reason": "invalid_credentials"}
    with app.app_context():
        db.session.execute(update(User).where(User.id == user["id"]).values(is_active=False))
        db.session.commit()
    assert login(client, authenticator).status_code == 401
    assert one(app, "login.failed", user_id=user["id"])["data"] == {"reason": "inactive"}
