"""A consumer told to stop while it is still starting (waiting for a broker, or for the
group to assign it partitions) ends at once with exit 0, instead of being killed by the
signal's default action (the chaos run saw exit -15 from consumers SIGTERMed while a
rebalance held their start)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once closed


def test_sigterm_while_waiting_for_kafka_at_start_exits_cleanly():
    env = dict(
        os.environ,
        INGEST_KAFKA__BOOTSTRAP_SERVERS=f"127.0.0.1:{_closed_port()}",
        INGEST_METRICS_PORT="0",
        INGEST_LOG_LEVEL="INFO",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest.cli", "consume"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # start-up retries making the topics while no broker answers
            seen.append(line)
            if "making the topics failed, retrying" in line or time.monotonic() > deadline:
                break
        assert any("making the topics failed" in ln for ln in seen), seen[-5:]
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=15)
        took = time.monotonic() - t0
    finally:
        proc.kill()
    assert proc.returncode == 0, rest[-2000:]
    assert "stopped during start-up" in rest
    assert took < 5
