"""Kafka codecs on Falco alerts: compressed size, and CPU to compress (the agent, once per
batch) and to decompress (each consumer), per alert, through aiokafka's own codec functions.

The alerts vary the way real ones do from one to the next (ids, pids, paths, times), not
only in their time: on copies of eight samples every codec looks better than it is.
    .venv/bin/python bench/compression.py [ALERTS_PER_BATCH]
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

import orjson
from aiokafka import codec
from common import alerts

CODECS: dict[str, tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]] = {
    "gzip": (codec.gzip_encode, codec.gzip_decode),  # aiokafka's level: 9
    "snappy": (codec.snappy_encode, codec.snappy_decode),
    "lz4": (codec.lz4_encode, codec.lz4_decode),
    "zstd": (codec.zstd_encode, codec.zstd_decode),
}


def varied(n: int) -> list[bytes]:
    """``alerts(n)`` with the values that differ between real alerts made to differ."""
    rnd = random.Random(7)
    out = []
    for value in alerts(n, "compression"):
        alert = orjson.loads(value)
        fields = alert.get("output_fields") or {}
        for key, old in fields.items():
            if type(old) is int:
                fields[key] = rnd.randrange(1, 1 << 31)
            elif type(old) is str and old:
                fields[key] = f"{old[: len(old) // 2]}{rnd.getrandbits(48):012x}"
        ids = " ".join(f"{k}={v}" for k, v in list(fields.items())[:3])
        alert["output"] = f"{alert.get('output', '')} {ids}"
        out.append(orjson.dumps(alert))
    return out


def cpu_us(fn: Callable[[bytes], bytes], data: bytes, rounds: int = 20) -> float:
    """Fastest of ``rounds`` calls, in microseconds of CPU (this machine's pace varies)."""
    best = float("inf")
    for _ in range(rounds):
        t0 = time.process_time()
        fn(data)
        best = min(best, time.process_time() - t0)
    return best * 1e6


def main() -> None:
    per_batch = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    batch = varied(per_batch)
    raw = b"".join(batch)  # a record batch holds about this: the values, few bytes more
    print(
        f"{per_batch} alerts per batch, {len(raw) / per_batch:.0f} bytes per alert, "
        f"{len(raw) / 1e6:.2f} MB per batch; CPU is the fastest of 20 runs"
    )
    print(f"{'codec':8} {'ratio':>6} {'compress us/alert':>18} {'decompress us/alert':>20}")
    for name, (encode, decode) in CODECS.items():
        packed = encode(raw)
        assert decode(packed) == raw
        print(
            f"{name:8} {len(raw) / len(packed):6.1f} {cpu_us(encode, raw) / per_batch:18.2f} "
            f"{cpu_us(decode, packed) / per_batch:20.2f}"
        )


if __name__ == "__main__":
    main()
