"""Agent footprint and speed against the local Kafka (./dev stack up first):

1. file -> Kafka: N alerts in a file, `agent --once`, alerts/s of wall and per CPU-second;
2. idle RSS after start-up, tailing an empty file;
3. CPU share at 100 alerts/s appended to the file for 20 s.
    .venv/bin/python bench/agent.py [N]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from common import PY, alerts, load_env, run_measured


def agent_env(state: Path, topic: str) -> dict[str, str]:
    return dict(
        os.environ,
        INGEST_KAFKA__TOPIC=topic,
        INGEST_AGENT__STATE_DIR=str(state),
        INGEST_METRICS_PORT="0",
        INGEST_LOG_LEVEL="WARNING",
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    load_env()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        log = tmp / "events.json"
        log.write_bytes(b"".join(a + b"\n" for a in alerts(n, tag)))
        empty = tmp / "empty.json"
        empty.touch()
        topic = f"bench-agent-{tag}"
        base_cmd = [PY, "-m", "ingest.cli", "agent", "--once", "--input"]
        wall0, cpu0, _ = run_measured(base_cmd + [f"file:{empty}"], agent_env(tmp / "s0", topic))
        wall, cpu, rc = run_measured(base_cmd + [f"file:{log}"], agent_env(tmp / "s1", topic))
        assert rc == 0, rc
        net = n / (cpu - cpu0)
        print(
            f"file -> Kafka: {n} alerts in {wall:.1f}s wall ({n / wall:,.0f} alerts/s), "
            f"{n / cpu:,.0f} alerts per CPU-second with start-up, {net:,.0f} without "
            f"(start-up alone: {cpu0:.2f} CPU-s); goal 50,000: ratio {net / 50_000:.2f}"
        )

        quiet = tmp / "quiet.json"
        quiet.touch()
        proc = subprocess.Popen(
            [PY, "-m", "ingest.cli", "agent", "--input", f"file:{quiet}"],
            env=agent_env(tmp / "s2", f"bench-agent-idle-{tag}"),
        )
        time.sleep(8)
        idle_rss = rss_mb(proc.pid)
        print(f"idle RSS: {idle_rss:.1f} MB (goal <= 60 MB)")
        lines = alerts(2000, tag + "slow")
        cpu0, t0 = cpu_seconds(proc.pid), time.perf_counter()
        with quiet.open("ab") as fh:
            for i in range(20 * 10):  # 10 writes of 10 alerts a second = 100 alerts/s
                fh.write(b"".join(a + b"\n" for a in lines[i * 10 % 2000 : i * 10 % 2000 + 10]))
                fh.flush()
                time.sleep(0.1)
        share = (cpu_seconds(proc.pid) - cpu0) / (time.perf_counter() - t0)
        print(
            f"at 100 alerts/s: {share * 100:.2f}% of one core (goal <= 2%), "
            f"RSS {rss_mb(proc.pid):.1f} MB"
        )
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
