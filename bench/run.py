"""make bench: how fast authapi is on this machine, as ratios to its own stack.

One run starts what it needs (PostgreSQL if it is down, a private redis-server,
an SMTP sink), makes a fresh database ``authapi_bench``, runs the migrations,
serves ``gunicorn wsgi:app`` with the repository's gunicorn.conf.py (sync
workers, WEB_CONCURRENCY=2, production settings, rate limits off) and drives it
from another process: wrk when it is installed, otherwise a bounded Python
client. Every figure is the median of RUNS runs of DURATION seconds; all cases
run in the same invocation, in rounds of one run of each case (ceiling, me,
me_floor, ... then again), so that their ratios hold on a noisy machine.
me, login and mixed are measured again under gthread workers (the default of
gunicorn.conf.py) for the choice of worker class, and me_floor measures the
least work /users/me needs in a bare view (ME_FLOOR_APP); those ratios are
reported but do not decide the exit status.

Prints a table and writes bench/results.json. Exits 1 when a target is missed.

    python bench/run.py [--duration 10] [--runs 3] [--client wrk|python]
                        [--cases ceiling,me,...] [--no-gthread]
"""

import argparse
import http.client
import json
import multiprocessing
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results.json"
PYTHON = sys.executable
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
PG_DATABASE = os.environ.get("BENCH_PG_DATABASE", "authapi_bench")
PASSWORD = "correct horse battery staple"
CONNECTIONS = 32  # for the read cases; the target on me's p99 is stated at 32
MIXED_LOGINS_PER_SECOND = 4

# The bench's own stack limit: a bare Flask view under the same gunicorn.
CEILING_APP = '''\
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(status="ok")
'''

# What GET /users/me cannot do without, in a bare view under the same gunicorn:
# flask-jwt-extended's check of the token, one Redis MGET of its revocation
# keys, one ORM load of the user by primary key, the marshmallow dump, with
# authapi's own settings, model and schema. None of authapi's hooks (request
# id, host and body checks, security headers, metrics, request log). The best
# me can do on this stack: reported beside me, not a target.
ME_FLOOR_APP = '''\
import redis
from flask import Flask
from flask_jwt_extended import JWTManager, get_jwt, jwt_required

from authapi.extensions import db
from authapi.models import User
from authapi.schemas import UserOut
from config import load_config

app = Flask(__name__)
app.config.from_object(load_config())
JWTManager(app)
db.init_app(app)
store = redis.Redis.from_url(app.config["REDIS_URL"])
user_out = UserOut()


@app.get("/")
@jwt_required()
def me():
    claims = get_jwt()
    user_id = claims["sub"]
    mark, cutoff = store.mget([f"authapi:{{u:{user_id}}}:s:{claims['sid']}", f"authapi:{{u:{user_id}}}:u"])
    if mark is not None or (cutoff is not None and claims["iat"] < int(cutoff)):
        return {"error": "revoked"}, 401
    user = db.session.get(User, int(user_id))
    if user is None or not user.is_active or user.role != claims["role"]:
        return {"error": "revoked"}, 401
    return user_out.dump(user)
'''

# Ratio targets of issue 8: (name, description, check(results) -> (value, limit, met)).
TARGETS = [
    ("me_vs_ceiling", "me req/s >= 0.60 x ceiling", lambda r: _ratio(r, "me", "ceiling", 0.60)),
    ("login_vs_argon2", "login req/s >= 0.90 x argon2_verify", lambda r: _ratio(r, "login", "argon2_verify", 0.90)),
    ("refresh_vs_ceiling", "refresh req/s >= 0.40 x ceiling", lambda r: _ratio(r, "refresh", "ceiling", 0.40)),
    ("me_tail", "me p99 <= 5 x me p50 (32 connections)", lambda r: _tail(r["me"], 5.0)),
    ("mixed_throughput", "mixed: me req/s >= 0.5 x solo me", lambda r: _ratio(r, "mixed", "me", 0.5)),
    ("mixed_tail", "mixed: me p99 <= 3 x solo me p99", lambda r: _p99_ratio(r, "mixed", "me", 3.0)),
    ("worker_rss", "worker RSS <= 120 MB", lambda r: (r["worker_rss_mb"], 120.0, r["worker_rss_mb"] <= 120.0)),
]
# Reported, not part of the exit status: whether the stack itself can reach the
# throughput targets (me_floor, see ME_FLOOR_APP; refresh does all of me's
# work and a write transaction and two signatures more), and the same ratios
# under gthread workers (gunicorn.conf.py's default) for the worker class.
INFO_TARGETS = [
    ("me_floor_vs_ceiling", "me_floor req/s >= 0.60 x ceiling", lambda r: _ratio(r, "me_floor", "ceiling", 0.60)),
    ("me_floor_vs_ceiling_refresh", "me_floor req/s >= 0.40 x ceiling",
     lambda r: _ratio(r, "me_floor", "ceiling", 0.40)),

    ("login_vs_argon2_gthread", "gthread: login req/s >= 0.90 x argon2_verify",
     lambda r: _ratio(r, "login_gthread", "argon2_verify", 0.90)),
    ("mixed_throughput_gthread", "gthread: mixed me req/s >= 0.5 x solo me",
     lambda r: _ratio(r, "mixed_gthread", "me_gthread", 0.5)),
    ("mixed_tail_gthread", "gthread: mixed me p99 <= 3 x solo me p99",
     lambda r: _p99_ratio(r, "mixed_gthread", "me_gthread", 3.0)),
]


def _ratio(results, case, base, limit):
    value = results[case]["rps"] / results[base]["rps"]
    return round(value, 3), limit, value >= limit


def _tail(case, limit):
    value = case["p99_ms"] / case["p50_ms"]
    return round(value, 2), limit, value <= limit


def _p99_ratio(results, case, base, limit):
    value = results[case]["p99_ms"] / results[base]["p99_ms"]
    return round(value, 2), limit, value <= limit


# ---------------------------------------------------------------- services


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise SystemExit(f"bench: {what} did not come up in {timeout:.0f} s")


def ensure_postgres():
    if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode == 0:
        return
    print("bench: starting PostgreSQL", flush=True)
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"], check=True)
    wait_for(lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode == 0,
             "PostgreSQL")


def fresh_database() -> str:
    engine = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{PG_DATABASE}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{PG_DATABASE}"'))
    engine.dispose()
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + PG_DATABASE


class Processes:
    """Everything the bench starts, stopped in reverse order at the end."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.started: list[subprocess.Popen] = []

    def start(self, name: str, args: list[str], **kwargs) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "w")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True, **kwargs)
        log.close()
        self.started.append(process)
        return process

    def stop(self, process: subprocess.Popen, sig=signal.SIGTERM):
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def stop_all(self):
        for process in reversed(self.started):
            self.stop(process)


def start_redis(procs: Processes) -> str:
    if os.environ.get("BENCH_REDIS_URL"):
        return os.environ["BENCH_REDIS_URL"]
    if not shutil.which("redis-server"):
        raise SystemExit("bench: redis-server is not installed; set BENCH_REDIS_URL")
    port = free_port()
    procs.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(port),
                          "--save", "", "--appendonly", "no"])
    import redis

    wait_for(lambda: redis.Redis(port=port).ping(), "redis-server")
    return f"redis://127.0.0.1:{port}/0"


def start_smtp_sink():
    """Registration sends a verification email: to a local sink, as a
    deployment would to its relay."""
    from aiosmtpd.controller import Controller

    class Discard:
        async def handle_DATA(self, server, session, envelope):
            return "250 OK"

    port = free_port()
    controller = Controller(Discard(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller, port


def start_gunicorn(procs, name, app_spec, env, worker_class, chdir=None, pythonpath=None):
    port = free_port()
    args = [PYTHON, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), app_spec,
            "--bind", f"127.0.0.1:{port}", "--worker-class", worker_class]
    if worker_class == "sync":
        # gunicorn silently turns "sync" into gthread when threads > 1, and
        # gunicorn.conf.py sets 4.
        args += ["--threads", "1"]
    if chdir:
        args += ["--chdir", str(chdir)]
    if pythonpath:
        args += ["--pythonpath", str(pythonpath)]
    process = procs.start(name, args, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: process.poll() is None and requests.get(url + "/", timeout=1) is not None,
             f"gunicorn {name}")
    return process, url


def worker_rss_mb(master_pid: int) -> list[float]:
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children").read_text().split()
    sizes = []
    for pid in children:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(round(int(line.split()[1]) / 1024, 1))
    return sizes


# ---------------------------------------------------------------- load clients

WRK_DONE = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
'''


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII is a valid Lua string


class Case:
    """What one load run sends: a fixed request, or requests made per
    connection (unique registrations, refresh chains)."""

    def __init__(self, name, method="GET", path="/", headers=None, body=None,
                 connections=CONNECTIONS, kind="fixed", seeds=None):
        self.name = name
        self.method = method
        self.path = path
        self.headers = headers or {}
        self.body = body
        self.connections = connections
        self.kind = kind  # fixed | register | refresh
        self.seeds = seeds or []  # refresh: one refresh token per connection

    def lua(self) -> str:
        headers = "{" + ", ".join(f"[{lua_string(k)}] = {lua_string(v)}" for k, v in self.headers.items()) + "}"
        if self.kind == "fixed":
            body = lua_string(self.body) if self.body is not None else "nil"
            return (f"wrk.method = {lua_string(self.method)}\nwrk.path = {lua_string(self.path)}\n"
                    f"wrk.headers = {headers}\nwrk.body = {body}\n" + WRK_DONE)
        if self.kind == "register":
            # wrk runs one Lua state per thread: a thread id from setup() and a
            # counter make each registration's names unique.
            return f'''
local n = 0
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("tid", threads) end
request = function()
  n = n + 1
  local name = string.format("b%s_%d_%d", "{time.time_ns() % 10**9}", tid, n)
  local body = string.format('{{"email": "%s@example.com", "username": "%s", "password": {lua_string(json.dumps(PASSWORD))[1:-1]}}}', name, name)
  return wrk.format("POST", "/auth/register", {headers}, body)
end
''' + WRK_DONE
        if self.kind == "refresh":
            # One connection per thread, each with its own chain: the token of
            # the response becomes the next request's.
            seeds = "{" + ", ".join(lua_string(s) for s in self.seeds) + "}"
            return f'''
local seeds = {seeds}
local threads = 0
setup = function(thread) threads = threads + 1; thread:set("token", seeds[threads]) end
request = function()
  return wrk.format("POST", "/auth/refresh", {{["Authorization"] = "Bearer " .. token}}, nil)
end
response = function(status, headers, body)
  local t = string.match(body, '"refresh_token":%s*"([^"]+)"')
  if t then token = t end
end
''' + WRK_DONE
        raise ValueError(self.kind)


def run_wrk(url: str, case: Case, duration: int, workdir: Path) -> dict:
    script = workdir / f"{case.name}.lua"
    script.write_text(case.lua())
    threads = case.connections if case.kind == "refresh" else min(2, case.connections)
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(case.connections), "-d", f"{duration}s",
         "--timeout", "10s", "-s", str(script), url + case.path],
        capture_output=True, text=True, timeout=duration + 60,
    )
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            raw = json.loads(line[len("BENCH "):])
            return {
                "requests": raw["requests"],
                "rps": raw["requests"] / (raw["duration_us"] / 1e6),
                "p50_ms": raw["p50_us"] / 1000,
                "p99_ms": raw["p99_us"] / 1000,
                "errors": sum(raw["errors"].values()),
            }
    raise RuntimeError(f"wrk gave no summary: {out.stdout}\n{out.stderr}")


def run_python_client(url: str, case: Case, duration: int, workdir: Path) -> dict:
    """The fallback load generator: one thread per connection, each on a
    persistent http.client connection (re-opened when the server closes it)."""
    host, port = url.split("//")[1].split(":")
    stop_at = time.monotonic() + duration
    latencies: list[list[float]] = [[] for _ in range(case.connections)]
    errors = [0] * case.connections
    stamp = time.time_ns() % 10**9

    def worker(index):
        conn = None
        token = case.seeds[index] if case.kind == "refresh" else None
        n = 0
        while time.monotonic() < stop_at:
            n += 1
            headers = dict(case.headers)
            body = case.body
            if case.kind == "register":
                name = f"p{stamp}_{index}_{n}"
                body = json.dumps({"email": f"{name}@example.com", "username": name, "password": PASSWORD})
            elif case.kind == "refresh":
                headers["Authorization"] = f"Bearer {token}"
            started = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                conn.request(case.method, case.path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException):
                errors[index] += 1
                conn = None
                continue
            latencies[index].append(time.perf_counter() - started)
            if response.status >= 400:
                errors[index] += 1
            elif case.kind == "refresh":
                token = json.loads(data)["refresh_token"]

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(case.connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    merged = sorted(x for per in latencies for x in per)
    if not merged:
        raise RuntimeError(f"{case.name}: no request completed")
    return {
        "requests": len(merged),
        "rps": len(merged) / elapsed,
        "p50_ms": merged[len(merged) // 2] * 1000,
        "p99_ms": merged[min(len(merged) - 1, int(len(merged) * 0.99))] * 1000,
        "errors": sum(errors),
    }


# ---------------------------------------------------------------- argon2 limit


def _verify_loop(stop_at: float, counter):
    from argon2 import PasswordHasher

    hasher = PasswordHasher()  # argon2-cffi's defaults: the production parameters
    password_hash = hasher.hash(PASSWORD)
    count = 0
    while time.time() < stop_at:
        hasher.verify(password_hash, PASSWORD)
        count += 1
    with counter.get_lock():
        counter.value += count


def argon2_verify(duration: int, processes: int = 2) -> dict:
    """How many verifications per second ``processes`` processes manage."""
    counter = multiprocessing.Value("l", 0)
    stop_at = time.time() + duration
    procs = [multiprocessing.Process(target=_verify_loop, args=(stop_at, counter)) for _ in range(processes)]
    started = time.time()
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    elapsed = time.time() - started
    return {"requests": counter.value, "rps": counter.value / elapsed, "p50_ms": None, "p99_ms": None, "errors": 0}


# ---------------------------------------------------------------- the cases


def api(url, method, path, **kwargs):
    response = requests.request(method, url + path, timeout=30, **kwargs)
    response.raise_for_status()
    return response.json() if response.content else None


def seed_users(url, count, prefix):
    stamp = time.time_ns() % 10**9
    users = []
    for i in range(count):
        name = f"{prefix}{stamp}_{i}"
        api(url, "POST", "/auth/register", json={"email": f"{name}@example.com", "username": name, "password": PASSWORD})
        users.append(name)
    return users


def login(url, username):
    return api(url, "POST", "/auth/login", json={"username": username, "password": PASSWORD})


def mixed_run(client, url, me_case, duration, workdir):
    """me at full load while logins arrive at a steady MIXED_LOGINS_PER_SECOND."""
    username = seed_users(url, 1, "mix")[0]
    statuses, login_ms = [], []
    lock = threading.Lock()

    def one_login():
        started = time.perf_counter()
        try:
            status = requests.post(url + "/auth/login", json={"username": username, "password": PASSWORD},
                                   timeout=30).status_code
        except requests.RequestException:
            status = 0
        with lock:
            statuses.append(status)
            login_ms.append((time.perf_counter() - started) * 1000)

    def pacer():
        # A steady rate: each login starts on its own thread on schedule,
        # whether or not the one before has answered.
        start = time.monotonic() + 0.5
        fired = []
        i = 0
        while True:
            at = start + i / MIXED_LOGINS_PER_SECOND
            if at > start + duration - 0.5:
                break
            time.sleep(max(0.0, at - time.monotonic()))
            thread = threading.Thread(target=one_login)
            thread.start()
            fired.append(thread)
            i += 1
        for thread in fired:
            thread.join()

    pacing = threading.Thread(target=pacer)
    pacing.start()
    result = client(url, me_case, duration, workdir)
    pacing.join()
    ok = sum(1 for s in statuses if s == 200)
    result["logins"] = len(statuses)
    result["logins_ok"] = ok
    result["login_p50_ms"] = statistics.median(login_ms) if login_ms else None
    result["login_max_ms"] = max(login_ms) if login_ms else None
    result["errors"] += len(statuses) - ok
    return result


def median_of(runs: list[dict]) -> dict:
    out = {"runs": runs}
    for key in ("rps", "p50_ms", "p99_ms"):
        values = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(values) if values else None
    out["errors"] = sum(r["errors"] for r in runs)
    for key in ("logins", "logins_ok"):
        if key in runs[0]:
            out[key] = sum(r[key] for r in runs)
    if "login_p50_ms" in runs[0]:
        out["login_p50_ms"] = statistics.median(r["login_p50_ms"] for r in runs if r["login_p50_ms"] is not None)
    return out


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                  if line.startswith("MemTotal:"))
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "loadavg_before": os.getloadavg()[0],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--client", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--cases", default="ceiling,me,me_floor,live,login,argon2_verify,refresh,register,mixed")
    parser.add_argument("--no-gthread", action="store_true",
                        help="skip measuring the mixed case under gthread workers too")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    client = run_wrk if args.client == "wrk" else run_python_client
    info = machine()
    print(f"bench: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, "
          f"load {info['loadavg_before']:.2f}; client {args.client}; {args.runs} x {args.duration} s per case",
          flush=True)

    workdir = Path(tempfile.mkdtemp(prefix="authapi-bench-"))
    procs = Processes(workdir)
    smtp = None
    results: dict = {}
    try:
        ensure_postgres()
        database_url = fresh_database()
        redis_url = start_redis(procs)
        smtp, smtp_port = start_smtp_sink()
        env = {
            **os.environ,
            "AUTHAPI_ENV": "production",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "SECRET_KEY": "bench-secret-key-" + "s" * 32,
            "JWT_SECRET_KEY": "bench-jwt-secret-key-" + "j" * 32,
            "RATELIMIT_ENABLED": "false",
            "MAIL_BACKEND": "smtp",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_port),
            "WEB_CONCURRENCY": "2",
        }
        for name in ("ARGON2_TIME_COST", "ARGON2_MEMORY_COST", "ARGON2_PARALLELISM", "PROMETHEUS_MULTIPROC_DIR"):
            env.pop(name, None)  # production argon2 parameters: argon2-cffi's defaults
        subprocess.run([PYTHON, "-m", "flask", "--app", "wsgi", "db", "upgrade"], cwd=ROOT, env=env,
                       check=True, capture_output=True)
        ceiling_dir = workdir / "ceiling"
        ceiling_dir.mkdir()
        (ceiling_dir / "ceiling.py").write_text(CEILING_APP)
        (ceiling_dir / "me_floor.py").write_text(ME_FLOOR_APP)

        def run_rounds(trials):
            """Run every trial once per round, round after round: each case's
            runs sit beside the others' in time, so a slow minute of a noisy
            machine falls on all of them alike. {name: median of its runs}."""
            runs = {name: [] for name, _ in trials}
            for i in range(args.runs):
                for name, run_once in trials:
                    r = run_once()
                    runs[name].append(r)
                    p = f", p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms" if r["p50_ms"] is not None else ""
                    print(f"  {name} run {i + 1}: {r['rps']:.1f} req/s{p}, errors {r['errors']}", flush=True)
            return {name: median_of(name_runs) for name, name_runs in runs.items()}

        for worker_class in ["sync"] + ([] if args.no_gthread or "mixed" not in cases else ["gthread"]):
            suffix = "" if worker_class == "sync" else "_gthread"
            print(f"bench: worker class {worker_class}", flush=True)
            wanted = cases if worker_class == "sync" else ["ceiling", "me", "login", "mixed"]
            # Every server is up for the whole round; the idle ones cost nothing.
            server, url = start_gunicorn(procs, f"authapi{suffix}", "wsgi:app", env, worker_class)
            users = seed_users(url, 4, "bench")
            access = login(url, users[0])["access_token"]
            me = Case("me", path="/users/me", headers={"Authorization": f"Bearer {access}"})
            trials, others = [], []
            if "ceiling" in wanted:
                ceiling, ceiling_url = start_gunicorn(procs, f"ceiling{suffix}", "ceiling:app", env,
                                                worker_class, chdir=ceiling_dir)
                others.append(ceiling)
                trials.append(("ceiling" + suffix, lambda: client(
                    ceiling_url, Case("ceiling", path="/"), args.duration, workdir)))
            if "me" in wanted or "mixed" in wanted:
                trials.append(("me" + suffix, lambda: client(url, me, args.duration, workdir)))
            if "me_floor" in wanted:
                # authapi signed the token the floor checks.
                floor, floor_url = start_gunicorn(procs, "me_floor", "me_floor:app", env, worker_class,
                                                  chdir=ceiling_dir, pythonpath=ROOT)
                others.append(floor)
                trials.append(("me_floor", lambda: client(
                    floor_url, Case("me_floor", path="/", headers=me.headers), args.duration, workdir)))
            if "live" in wanted:
                trials.append(("live", lambda: client(
                    url, Case("live", path="/health/live"), args.duration, workdir)))
            if "login" in wanted and "login" in cases:
                body = json.dumps({"username": users[1], "password": PASSWORD})
                trials.append(("login" + suffix, lambda: client(url, Case(
                    "login", "POST", "/auth/login", {"Content-Type": "application/json"}, body,
                    connections=4), args.duration, workdir)))
            if "argon2_verify" in wanted:
                trials.append(("argon2_verify", lambda: argon2_verify(args.duration)))
            if "refresh" in wanted:
                def refresh_once():
                    seeds = [login(url, users[2])["refresh_token"] for _ in range(8)]
                    return client(url, Case("refresh", "POST", "/auth/refresh", connections=8,
                                            kind="refresh", seeds=seeds), args.duration, workdir)
                trials.append(("refresh", refresh_once))
            if "register" in wanted:
                trials.append(("register", lambda: client(url, Case(
                    "register", "POST", "/auth/register", {"Content-Type": "application/json"},
                    connections=4, kind="register"), args.duration, workdir)))
            if "mixed" in wanted:
                trials.append(("mixed" + suffix, lambda: mixed_run(client, url, me, args.duration, workdir)))
            results.update(run_rounds(trials))
            for process in others:
                procs.stop(process)
            if worker_class == "sync":
                results["worker_rss_mb"] = max(worker_rss_mb(server.pid))
                results["worker_rss_all_mb"] = worker_rss_mb(server.pid)
            else:
                results["worker_rss_gthread_mb"] = max(worker_rss_mb(server.pid))
            procs.stop(server)
    finally:
        procs.stop_all()
        if smtp:
            smtp.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    targets = []
    for required, table_ in ((True, TARGETS), (False, INFO_TARGETS)):
        for name, description, check in table_:
            try:
                value, limit, met = check(results)
            except (KeyError, TypeError, ZeroDivisionError):
                continue  # a case it needs was not run
            targets.append({"name": name, "target": description, "value": value, "met": bool(met),
                            "required": required})
    info["loadavg_after"] = os.getloadavg()[0]
    report = {
        "machine": info,
        "settings": {"client": args.client, "duration_s": args.duration, "runs": args.runs,
                     "workers": 2, "worker_class": "sync", "connections": CONNECTIONS,
                     "argon2": "argon2-cffi defaults (time_cost 3, memory 64 MiB, parallelism 4)"},
        "results": results,
        "targets": targets,
    }
    Path(args.output).write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(results, targets))
    print(f"\nwrote {args.output}")
    return 0 if all(t["met"] for t in targets if t["required"]) else 1


def table(results, targets) -> str:
    lines = ["| case | req/s | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|"]
    order = ["ceiling", "me", "me_floor", "live", "login", "argon2_verify", "refresh", "register", "mixed",
             "ceiling_gthread", "me_gthread", "login_gthread", "mixed_gthread"]
    for name in order:
        if name not in results:
            continue
        r = results[name]
        fmt = lambda v: "" if v is None else f"{v:.2f}"
        label = name
        if name.startswith("mixed"):
            label += f" (me; {r.get('logins_ok', 0)}/{r.get('logins', 0)} logins ok)"
        lines.append(f"| {label} | {r['rps']:.1f} | {fmt(r['p50_ms'])} | {fmt(r['p99_ms'])} | {r['errors']} |")
    if "worker_rss_mb" in results:
        lines.append(f"\nworker RSS after the run: {results['worker_rss_all_mb']} MB (sync)"
                     + (f", max {results['worker_rss_gthread_mb']} MB (gthread)" if "worker_rss_gthread_mb" in results else ""))
    lines.append("\n| target | measured | met |\n|---|---:|---|")
    for t in targets:
        met = "yes" if t["met"] else "NO"
        lines.append(f"| {t['target']} | {t['value']} | {met if t['required'] else met.lower() + ' (info)'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
