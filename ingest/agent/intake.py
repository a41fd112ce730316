"""Where every input hands its alerts: size check, reject file, spool, back-pressure."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

from ingest import metrics
from ingest.agent.spool import Spool

log = logging.getLogger(__name__)


class Intake:
    def __init__(self, spool: Spool, reject_file: Path, max_alert_bytes: int) -> None:
        self.spool = spool
        self.reject_file = reject_file
        self.max_alert_bytes = max_alert_bytes
        self._full_since: float | None = None

    def _split_oversize(self, name: str, lines: list[bytes]) -> list[bytes]:
        keep = [ln for ln in lines if len(ln) <= self.max_alert_bytes]
        if len(keep) != len(lines):
            with self.reject_file.open("ab") as fh:
                for ln in lines:
                    if len(ln) > self.max_alert_bytes:
                        fh.write(ln + b"\n")
                        metrics.AGENT_REJECTED.labels("too_large").inc()
                        log.warning(
                            "alert larger than Kafka accepts kept in the reject file",
                            extra={"input": name, "bytes": len(ln), "file": str(self.reject_file)},
                        )
        return keep

    def try_put(self, name: str, lines: list[bytes]) -> bool:
        """Spool ``lines`` now, or return False when the spool is full."""
        lines = self._split_oversize(name, lines)
        if not lines:
            return True
        now = time.time_ns()
        if self.spool.append([(name, now, ln) for ln in lines]):
            if self._full_since is not None:
                log.warning("spool has room again", extra={"input": name})
                self._full_since = None
            metrics.AGENT_ACCEPTED.labels(name.split(":", 1)[0]).inc(len(lines))
            return True
        if self._full_since is None:
            self._full_since = time.monotonic()
            log.error(
                "spool full: inputs are held back until Kafka takes alerts again",
                extra={"input": name, "spool_bytes": self.spool.pending_bytes},
            )
        return False

    async def put(self, name: str, lines: list[bytes], stop: asyncio.Event) -> bool:
        """Spool ``lines``, waiting while the spool is full. False if stopped meanwhile."""
        while not self.try_put(name, lines):
            if stop.is_set():
                return False
            await asyncio.sleep(0.2)
        return True
