"""Normalise + encode on one core: alerts/s over a mix like the sample file.

.venv/bin/python bench/normalize.py [N]
"""

from __future__ import annotations

import sys
import time

from common import alerts

from ingest.normalize.document import Document, normalize
from ingest.sink.bulk import action_line


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    raw = alerts(n, "bench")
    lineage = ("falco.events", 0, 0, None)
    now = time.time_ns()
    best = 0.0
    for _ in range(3):
        t0 = time.process_time()
        size = 0
        for value in raw:
            doc = normalize(value, lineage, now)
            assert isinstance(doc, Document)
            size += len(action_line("falco-" + doc.day, doc.doc_id)) + len(doc.body)
        cpu = time.process_time() - t0
        best = max(best, n / cpu)
    print(f"normalise+encode: {n} alerts, {best:,.0f} alerts/s per CPU-second (goal 100,000)")
    print(f"ratio to goal: {best / 100_000:.2f}x")


if __name__ == "__main__":
    main()
