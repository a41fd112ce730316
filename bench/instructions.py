"""Instructions per alert of each consumer process, counted by valgrind (callgrind).

CPU seconds on a shared machine vary from run to run; instruction counts do not. Each
consumer runs twice under callgrind, over a topic of N/5 alerts and one of N; the
difference divided by the extra alerts leaves start-up and group joining out.
Needs the stack (./dev stack up) and valgrind (Debian package). Slow: ~50x.
    .venv/bin/python bench/instructions.py [N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid

from common import alerts, load_env
from consumer import commands, produce, setup_prefix
from opensearchpy import AsyncOpenSearch


async def counted(who: str, topic: str, n: int, url: str) -> int:
    """Instructions of one consumer run that stores ``n`` alerts of ``topic``."""
    tag = uuid.uuid4().hex[:8]
    prefix = f"bench-cg-{tag}"
    await setup_prefix(prefix)
    cmd, env = commands(topic, tag, prefix, n, who)
    if who == "ours":
        cmd += ["--stop-when-idle", "3"]
        env["INGEST_CONSUMER__SESSION_TIMEOUT_MS"] = "60000"  # valgrind is slow
    with tempfile.NamedTemporaryFile(prefix="callgrind.") as out:
        grind = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out.name}"]
        proc = await asyncio.create_subprocess_exec(
            *grind, *cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL
        )
        _, err = await proc.communicate()
    client = AsyncOpenSearch(hosts=[url])
    try:
        await client.indices.delete(index=f"{prefix}-*", ignore_unavailable=True)
    finally:
        await client.close()
    m = re.search(r"Collected : (\d+)", err.decode())
    if proc.returncode != 0 or m is None:
        sys.exit(f"{who} under valgrind failed ({proc.returncode}): {err.decode()[-800:]}")
    print(f"  {who:<5} {n:>7} alerts: {int(m.group(1)):>15,} instructions", flush=True)
    return int(m.group(1))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # 100,000: the runs' fixed costs (group join, idle polls before --stop-when-idle) vary
    # by ~150 million instructions; 4,000 against 20,000 gave 45.6k and 54.6k per alert for
    # the same code, 20,000 against 100,000 divides that noise by five.
    parser.add_argument("n", nargs="?", type=int, default=100_000, help="alerts of the big run")
    n = parser.parse_args().n
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (apt-get install valgrind)")
    load_env()
    url = os.environ["INGEST_OPENSEARCH__URL"]
    small = n // 5
    tag = uuid.uuid4().hex[:8]
    topics = {size: f"bench-cg-{size}-{tag}" for size in (small, n)}
    for size, topic in topics.items():
        await produce(topic, alerts(size, f"{tag}{size}"))
    per_alert = {}
    for who in ("ours", "naive"):
        low = await counted(who, topics[small], small, url)
        high = await counted(who, topics[n], n, url)
        per_alert[who] = (high - low) / (n - small)
    print(f"\ninstructions per alert (callgrind, {n - small} alerts of difference)")
    print(f"falco-ingest consume  {per_alert['ours']:>10,.0f}")
    print(f"naive baseline        {per_alert['naive']:>10,.0f}")
    print(f"naive / ours (goal >= 3): {per_alert['naive'] / per_alert['ours']:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
