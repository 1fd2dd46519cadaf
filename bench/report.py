"""What a run found: the machine, the settings it ran with, the results and
the targets, printed as tables and written to results.json."""

import json
import os
import platform
from pathlib import Path

from cases import CASES, READ_CONNECTIONS, TARGETS, WORKER_CLASSES, result_name


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


def evaluate(results: dict) -> list[dict]:
    targets = []
    for target in TARGETS:
        try:
            value, _limit, met = target.check(results)
        except (KeyError, TypeError, ZeroDivisionError):
            continue  # a case it needs was not run
        targets.append({"name": target.name, "target": target.description, "value": value,
                        "met": bool(met), "required": target.required})
    return targets


def settings(args, ran: dict) -> dict:
    """``ran``: what the measurement that decides the exit status ran with."""
    return {"client": args.client, "duration_s": args.duration, "runs": args.runs,
            "workers": ran["workers"], "worker_class": ran["worker_class"],
            "connections": READ_CONNECTIONS, "argon2": ran["argon2"]}


def _number(value) -> str:
    return "" if value is None else f"{value:.2f}"


def _pg_key(results: dict) -> str:
    """What the PostgreSQL column counts (bench/roundtrips.py)."""
    for r in results.values():
        for key in r if isinstance(r, dict) else ():
            if key.startswith("pg_") and key.endswith("_per_request"):
                return key
    return "pg_statements_per_request"


def table(results: dict, targets: list[dict]) -> str:
    pg_key = _pg_key(results)
    pg_label = pg_key.removeprefix("pg_").removesuffix("_per_request")
    lines = [f"| case | req/s | p50 ms | p99 ms | errors | Redis commands/req | PostgreSQL {pg_label}/req |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for worker_class in WORKER_CLASSES:
        for case in CASES:
            name = result_name(case.name, worker_class)
            if name not in results:
                continue
            r = results[name]
            label = name + (f" (me; {r['logins_ok']}/{r['logins']} logins ok)" if "logins" in r else "")
            lines.append(f"| {label} | {r['rps']:.1f} | {_number(r['p50_ms'])} | {_number(r['p99_ms'])} "
                         f"| {r['errors']} | {_number(r.get('redis_per_request'))} "
                         f"| {_number(r.get(pg_key))} |")
    if "worker_rss_mb" in results:
        lines.append(f"\nworker RSS after the run: {results['worker_rss_all_mb']} MB (sync)"
                     + (f", max {results['worker_rss_gthread_mb']} MB (gthread)"
                        if "worker_rss_gthread_mb" in results else ""))
    lines.append("\n| target | measured | met |\n|---|---:|---|")
    for t in targets:
        met = "yes" if t["met"] else "NO"
        lines.append(f"| {t['target']} | {t['value']} | {met if t['required'] else met.lower() + ' (info)'} |")
    return "\n".join(lines)


def write(output: str, info: dict, run_settings: dict, results: dict) -> bool:
    """Print the tables and write ``output``; whether every required target
    was met."""
    targets = evaluate(results)
    info["loadavg_after"] = os.getloadavg()[0]
    report = {"machine": info, "settings": run_settings, "results": results, "targets": targets}
    Path(output).write_text(json.dumps(report, indent=2) + "\n")
    print()
    print(table(results, targets))
    print(f"\nwrote {output}")
    return all(t["met"] for t in targets if t["required"])
