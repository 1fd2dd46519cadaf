"""login's limit: how many argon2 verifications a second the machine does,
with the parameters authapi hashed with, in as many processes as it has
workers."""

import multiprocessing
import time

from argon2 import PasswordHasher, extract_parameters

from clients import run_together


def _verify_loop(password_hash: str, password: str, stop_at: float, counter):
    hasher = PasswordHasher.from_parameters(extract_parameters(password_hash))
    count = 0
    while time.time() < stop_at:
        hasher.verify(password_hash, password)
        count += 1
    with counter.get_lock():
        counter.value += count


def argon2_verify(password_hash: str, password: str, duration: int, processes: int) -> dict:
    counter = multiprocessing.Value("l", 0)
    stop_at = time.time() + duration
    elapsed = run_together([
        multiprocessing.Process(target=_verify_loop, args=(password_hash, password, stop_at, counter))
        for _ in range(processes)
    ])
    return {"requests": counter.value, "rps": counter.value / elapsed, "p50_ms": None, "p99_ms": None,
            "errors": 0, "processes": processes}


def describe(password_hash: str) -> str:
    """The parameters of a hash as the report states them."""
    params = extract_parameters(password_hash)
    stated = (f"time_cost {params.time_cost}, memory {params.memory_cost // 1024} MiB, "
              f"parallelism {params.parallelism}")
    defaults = PasswordHasher()
    if (params.time_cost, params.memory_cost, params.parallelism) == (
            defaults.time_cost, defaults.memory_cost, defaults.parallelism):
        return f"argon2-cffi defaults ({stated})"
    return stated
