"""Shared helpers for the benchmark scripts (run them with the stack up: ./dev stack up)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = [ln for ln in (ROOT / "examples" / "sample-alerts.jsonl").read_bytes().splitlines() if ln]


def load_env() -> None:
    env_file = ROOT / ".stack" / "env"
    if not os.environ.get("INGEST_KAFKA__BOOTSTRAP_SERVERS") and env_file.exists():
        for line in env_file.read_text().splitlines():
            key, _, value = line.removeprefix("export ").partition("=")
            os.environ[key] = value.strip("'")


def alerts(n: int, tag: str) -> list[bytes]:
    """A mix like the sample file (every shape), each alert made distinct and recent."""
    base = time.time_ns() - 6 * 3600 * 10**9
    out = []
    for i in range(n):
        a = orjson.loads(SAMPLES[i % len(SAMPLES)])
        ns = base + i * 1_000_003
        secs, frac = divmod(ns, 10**9)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{frac:09d}Z"
        a["time"] = stamp
        a["output"] = f"{stamp}: {a['priority']} {tag} #{i} " + a.get("output", "")[31:]
        out.append(orjson.dumps(a))
    return out


def run_measured(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run ``cmd``; return (wall seconds, CPU seconds of the child, exit code)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    return wall, usage.ru_utime + usage.ru_stime, os.waitstatus_to_exitcode(status)


def self_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


PY = sys.executable
