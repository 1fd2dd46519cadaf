"""One worker class's measurement: its servers, the users its cases need, and
every case run once per round, round after round."""

import statistics
from pathlib import Path

import sqlalchemy as sa

from argon2_limit import describe
from cases import APPS, WORKER_CLASSES, Case, Setup, login, register_users, result_name
from clients import CLIENTS
from roundtrips import RoundTrips
from servers import Processes, Server, start_gunicorn


def start_servers(procs: Processes, env: dict, worker_class: str, cases: list[Case]) -> dict[str, Server]:
    """authapi always (the users and tokens are made through it), and every
    other app a case drives. Every server is up for the whole measurement;
    the idle ones cost nothing."""
    apps = ["authapi"] + [c.app for c in cases if c.app not in (None, "authapi")]
    servers = {}
    for app in dict.fromkeys(apps):
        spec, in_apps = APPS[app]
        servers[app] = start_gunicorn(procs, result_name(app, worker_class), spec, env, worker_class,
                                      in_apps=in_apps)
    return servers


def stored_password_hash(database_url: str, username: str) -> str:
    engine = sa.create_engine(database_url)
    with engine.connect() as conn:
        password_hash = conn.execute(sa.text("SELECT password_hash FROM users WHERE username = :u"),
                                     {"u": username}).scalar_one()
    engine.dispose()
    return password_hash


def prepare(servers: dict[str, Server], env: dict, client, duration: int, workdir: Path) -> Setup:
    authapi = servers["authapi"]
    users = register_users(authapi.url, 4, "bench")
    return Setup(
        urls={app: server.url for app, server in servers.items()},
        client=client,
        duration=duration,
        workdir=workdir,
        workers=len(authapi.worker_pids()),
        env=env,
        users=users,
        access_token=login(authapi.url, users[0])["access_token"],
        # What authapi hashed with, so argon2_verify measures its parameters.
        password_hash=stored_password_hash(env["DATABASE_URL"], users[0]),
        round_trips=RoundTrips(env["DATABASE_URL"], env["REDIS_URL"]),
    )


def median_of(runs: list[dict]) -> dict:
    out = {"runs": runs}
    for key in ("rps", "p50_ms", "p99_ms"):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    out["errors"] = sum(r["errors"] for r in runs)
    for key in ("connections", "processes"):
        if key in runs[0]:
            out[key] = runs[0][key]
    for key in runs[0]:
        if key.endswith("_per_request"):
            out[key] = statistics.median(r[key] for r in runs)
    for key in ("logins", "logins_ok"):
        if key in runs[0]:
            out[key] = sum(r[key] for r in runs)
    if "login_p50_ms" in runs[0]:
        out["login_p50_ms"] = statistics.median(r["login_p50_ms"] for r in runs if r["login_p50_ms"] is not None)
    return out


def run_in_rounds(cases: list[Case], setup: Setup, rounds: int, worker_class: str) -> dict:
    """Run every case once per round, round after round: each case's runs sit
    beside the others' in time, so a slow minute of a noisy machine falls on
    all of them alike. {result name: median of its runs}."""
    runs = {case.name: [] for case in cases}
    for i in range(rounds):
        for case in cases:
            r = case.run_once(setup)
            runs[case.name].append(r)
            p = f", p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms" if r["p50_ms"] is not None else ""
            trips = "".join(f", {key.removesuffix('_per_request')}/req {value}"
                            for key, value in r.items() if key.endswith("_per_request"))
            print(f"  {result_name(case.name, worker_class)} run {i + 1}: {r['rps']:.1f} req/s{p}, "
                  f"errors {r['errors']}{trips}", flush=True)
    return {result_name(name, worker_class): median_of(case_runs) for name, case_runs in runs.items()}


def measure(procs: Processes, env: dict, worker_class: str, cases: list[Case], args, workdir: Path):
    """Results of ``cases`` under ``worker_class``, with its workers' memory;
    and what ran: the worker class, how many workers authapi had, the argon2
    parameters it hashed with."""
    print(f"bench: worker class {worker_class}", flush=True)
    servers = start_servers(procs, env, worker_class, cases)
    setup = prepare(servers, env, CLIENTS[args.client], args.duration, workdir)
    results = run_in_rounds(cases, setup, args.runs, worker_class)
    setup.round_trips.close()
    authapi = servers["authapi"]
    rss = authapi.worker_rss_mb()
    if worker_class == WORKER_CLASSES[0]:
        results.update(worker_rss_mb=max(rss), worker_rss_all_mb=rss)
    else:
        results[f"worker_rss_{worker_class}_mb"] = max(rss)
    for server in reversed(servers.values()):
        procs.stop(server.process)
    return results, {"worker_class": worker_class, "workers": setup.workers,
                     "argon2": describe(setup.password_hash)}
