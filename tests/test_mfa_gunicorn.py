"""Two-factor login through a real gunicorn with several workers (API.md §8):
the two steps, and two racing uses of one code, land on whichever workers
the kernel picks, so the mfa_token and the last-used time step must live in
the shared store and the database, not in a worker."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pyotp
import requests

from .clients import PASSWORD, LiveAuth, bearer, claims_of

TIMEOUT = 30


def post(server, path, token=None, **body):
    headers = bearer(token) if token else {}
    return requests.post(server.url + path, json=body, headers=headers, timeout=TIMEOUT)


def enrol(server, pair) -> tuple[pyotp.TOTP, list[str]]:
    setup = post(server, "/auth/mfa/totp/setup", pair["access_token"], password=PASSWORD)
    assert setup.status_code == 200, setup.text
    totp = pyotp.TOTP(setup.json()["secret"])
    confirm = post(server, "/auth/mfa/totp/confirm", pair["access_token"], code=totp.now())
    assert confirm.status_code == 200, confirm.text
    return totp, confirm.json()["recovery_codes"]


def first_step(server, username) -> str:
    response = post(server, "/auth/login", username=username, password=PASSWORD)
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "mfa_required"
    return response.json()["error"]["mfa_token"]


def test_two_step_logins_across_workers(gunicorn_server):
    user, pair = LiveAuth(gunicorn_server.url).user("mfa")
    _, recovery_codes = enrol(gunicorn_server, pair)
    for one_time_code in recovery_codes[:4]:
        mfa_token = first_step(gunicorn_server, user["username"])
        done = post(gunicorn_server, "/auth/login/mfa", mfa_token=mfa_token, code=one_time_code)
        assert done.status_code == 200, done.text
        tokens = done.json()
        assert claims_of(tokens["access_token"])["amr"] == ["pwd", "otp", "mfa"]
        me = requests.get(gunicorn_server.url + "/users/me", headers=bearer(tokens["access_token"]),
                          timeout=TIMEOUT)
        assert me.status_code == 200 and me.json()["mfa_enabled"] is True
        # Spent, whichever worker is asked.
        again = post(gunicorn_server, "/auth/login/mfa", mfa_token=mfa_token, code=recovery_codes[-1])
        assert again.status_code == 401 and again.json()["error"]["code"] == "token_invalid"
        refreshed = post(gunicorn_server, "/auth/refresh", refresh_token=tokens["refresh_token"])
        assert refreshed.status_code == 200, refreshed.text
        assert claims_of(refreshed.json()["access_token"])["amr"] == ["pwd", "otp", "mfa"]


def test_one_code_raced_on_two_tokens_has_one_winner(gunicorn_server):
    user, pair = LiveAuth(gunicorn_server.url).user("mfarace")
    totp, _ = enrol(gunicorn_server, pair)
    # The next period's code: accepted (the window is ±1) and later than the
    # step the enrolment used, so only the race decides.
    one_time_code = totp.at(time.time() + totp.interval)
    tokens = [first_step(gunicorn_server, user["username"]) for _ in range(6)]
    barrier = threading.Barrier(len(tokens))

    def attempt(mfa_token):
        with requests.Session() as http:
            barrier.wait(timeout=TIMEOUT)
            return http.post(gunicorn_server.url + "/auth/login/mfa", timeout=TIMEOUT,
                             json={"mfa_token": mfa_token, "code": one_time_code})

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        statuses = sorted(response.status_code for response in pool.map(attempt, tokens))
    assert statuses == [200] + [401] * (len(tokens) - 1)
