"""The chaos run, short: bench/chaos.py on the replicated stack with 20,000 alerts and its
phases at 0.4 of their length (a broker leader, consumers, an agent of each kind SIGKILLed;
a node SIGSTOPped; a storm against lowered indexing-pressure limits; the fleet scaled
3 -> 1 -> 3). It must end with every alert stored once; its figures are checked to be
there and to say the faults happened."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def test_every_alert_stored_once_through_the_faults(replicated, tmp_path):
    figures = tmp_path / "chaos.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--alerts", "20000", "--pace", "0.4"]
        + ["--session-timeout-ms", "10000", "--json", str(figures)],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    said = done.stdout[-4000:] + done.stderr[-4000:]
    assert done.returncode == 0, said
    run = orjson.loads(figures.read_bytes())
    totals = run["totals"]
    assert totals["distinct"] == totals["stored"] == 20_000, said
    assert totals["duplicates"] == totals["lost"] == totals["dead_lettered"] == 0
    assert totals["final_lag"] == 0 and set(totals["spool_bytes"].values()) == {0.0}
    assert totals["rotations"] >= 3 and not totals["crashes"] and not totals["unclean_exits"]
    phases = {p["name"]: p for p in run["phases"]}
    assert list(phases) == ["steady", "broker", "consumers", "node", "agents", "storm", "scale"]
    done_actions = " | ".join(a for p in run["phases"] for a in p["actions"])
    for act in ("SIGKILL kafka", "SIGKILL consumer-", "SIGSTOP opensearch-2", "SIGCONT"):
        assert act in done_actions, done_actions
    assert "SIGKILL agent-file" in done_actions and "SIGKILL agent-http" in done_actions
    assert "SIGTERM consumer-2 (exit 0)" in done_actions
    # the 429s were the nodes' own (indexing pressure), counted from their stats
    assert sum(p["rejections"] for p in run["phases"]) > 0, said
    # a sample a second, each phase with its figures
    assert len(run["samples"]) > sum(p["end"] - p["start"] for p in run["phases"]) * 0.8
    assert all(p["max_lag"] is not None for p in run["phases"])
