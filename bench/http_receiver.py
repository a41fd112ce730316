"""The agent's HTTP receiver as Falco's http_output uses it (one alert per POST), with C
clients posting at once: POSTs answered 200 per second. Each 200 waits for an fsync of the
spool; POSTs waiting together share one. Needs the stack (./dev stack up).
    .venv/bin/python bench/http_receiver.py [N] [--clients C]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
from agent import agent_env
from common import PY, alerts, load_env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", nargs="?", type=int, default=4000, help="alerts to post")
    parser.add_argument("--clients", type=int, default=50, help="POSTs in flight at once")
    args = parser.parse_args()
    load_env()
    tag = uuid.uuid4().hex[:8]
    port = free_port()
    env = agent_env(Path(tempfile.mkdtemp()), f"bench-http-{tag}")
    agent = subprocess.Popen(
        [PY, "-m", "ingest.cli", "agent", "--input", f"http://127.0.0.1:{port}"], env=env
    )
    values = alerts(args.n, tag)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                try:
                    async with session.get(f"http://127.0.0.1:{port}/ping"):
                        break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)

            async def client(chunk: list[bytes]) -> None:
                for value in chunk:
                    async with session.post(f"http://127.0.0.1:{port}/", data=value) as r:
                        assert r.status == 200, r.status

            t0 = time.perf_counter()
            await asyncio.gather(*(client(values[i :: args.clients]) for i in range(args.clients)))
            wall = time.perf_counter() - t0
    finally:
        agent.terminate()
        agent.wait()
    print(f"{args.n} POSTs, {args.clients} at once: {args.n / wall:,.0f} answered 200 per second")


if __name__ == "__main__":
    asyncio.run(main())
