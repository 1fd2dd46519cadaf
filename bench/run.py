"""make bench: how fast authapi is on this machine, as ratios to its own stack.

One run starts what it needs (a private PostgreSQL cluster with
pg_stat_statements, a private redis-server, an SMTP sink), makes a fresh
database ``authapi_bench``, runs the migrations,
serves ``gunicorn wsgi:app`` with the repository's gunicorn.conf.py (sync
workers, WEB_CONCURRENCY=2, production settings, rate limits off) and drives it
from another process: wrk when it is installed, otherwise a bounded Python
client. Every figure is the median of RUNS runs of DURATION seconds; all cases
run in the same invocation, in rounds of one run of each case (ceiling, me,
me_floor, ... then again), so that their ratios hold on a noisy machine.
Each run also counts the Redis commands and PostgreSQL statements its server
was sent, per request (roundtrips.py). The cases marked gthread in cases.py
(ceiling, me, login, mixed) are measured again under gthread workers (the
default of gunicorn.conf.py) for the choice of worker class, and me_floor and
verify_floor measure the least work /users/me and /auth/verify need, in bare
views (bench/apps/floors.py); those ratios are reported but do not decide the
exit status.

Prints a table and writes bench/results.json. Exits 1 when a target is missed.

    python bench/run.py [--duration 10] [--runs 3] [--client wrk|python]
                        [--cases ceiling,me,...] [--no-gthread]

The parts: servers.py (the processes), clients.py (the load clients),
cases.py (the cases and targets), refresh_queue.py (the refresh case's
tokens), roundtrips.py (the counts per request), rounds.py (one worker
class's measurement), report.py (the tables and results.json).
"""

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import report
from cases import CASE_NAMES, WORKER_CLASSES, select
from clients import CLIENTS
from rounds import measure
from servers import Processes, backing_services

RESULTS = Path(__file__).resolve().parent / "results.json"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--client", choices=sorted(CLIENTS), default="wrk" if shutil.which("wrk") else "python")
    parser.add_argument("--cases", default=",".join(CASE_NAMES))
    parser.add_argument("--no-gthread", action="store_true",
                        help="skip measuring ceiling, me, login and mixed under gthread workers too")
    parser.add_argument("--output", default=str(RESULTS))
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    names = args.cases.split(",")
    worker_classes = WORKER_CLASSES[:1] if args.no_gthread else WORKER_CLASSES
    plan = [(wc, cases) for wc in worker_classes if (cases := select(names, wc))]
    info = report.machine()
    print(f"bench: {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB, "
          f"load {info['loadavg_before']:.2f}; client {args.client}; {args.runs} x {args.duration} s per case",
          flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="authapi-bench-"))
    procs = Processes(workdir)
    results, ran = {}, []
    try:
        with backing_services(procs) as env:
            for worker_class, cases in plan:
                found, settings = measure(procs, env, worker_class, cases, args, workdir)
                results.update(found)
                ran.append(settings)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    met = report.write(args.output, info, report.settings(args, ran[0]), results)
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
