"""Normalise + encode on one core: alerts/s over a mix like the sample file.

.venv/bin/python bench/normalize.py [N]
"""

from __future__ import annotations

import sys
import time

from common import alerts

from ingest.normalize.document import Document, normalize
from ingest.sink.bulk import OpenSearchSink


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    raw = alerts(n, "bench")
    lineage = ("falco.events", 0, 0, None)
    now = time.time_ns()
    sink = OpenSearchSink(None, "falco")  # type: ignore[arg-type]  # encodes only
    best = 0.0
    for _ in range(7):  # best of 7: this shared machine's speed varies from run to run
        t0 = time.process_time()
        size = 0
        for start in range(0, n, 2000):
            docs = []
            for value in raw[start : start + 2000]:
                doc = normalize(value, lineage, now)
                assert isinstance(doc, Document)
                docs.append(doc)
            size += len(sink.encode(docs))
        cpu = time.process_time() - t0
        best = max(best, n / cpu)
    print(f"normalise+encode: {n} alerts, {best:,.0f} alerts/s per CPU-second (goal 100,000)")
    print(f"ratio to goal: {best / 100_000:.2f}x")


if __name__ == "__main__":
    main()
