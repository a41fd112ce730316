"""`falco-ingest agent`: inputs -> spool -> Kafka, until SIGTERM (or EOF with --once)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiokafka import AIOKafkaProducer

from ingest import metrics
from ingest.agent.intake import Intake
from ingest.agent.receivers import HttpReceiver, StdinReader
from ingest.agent.sender import KafkaShipper
from ingest.agent.spool import Spool
from ingest.agent.tail import FileTail, Positions
from ingest.config import AgentSettings
from ingest.errors import ConfigError
from ingest.kafka_access import check_access

log = logging.getLogger(__name__)


class Input(Protocol):
    name: str

    async def run(self, stop: asyncio.Event) -> None: ...


def build_inputs(
    specs: list[str], settings: AgentSettings, intake: Intake, positions: Positions, once: bool
) -> list[Input]:
    a = settings.agent
    inputs: list[Input] = []
    for spec in specs:
        if spec == "stdin":
            inputs.append(StdinReader(intake))
        elif spec.startswith("file:"):
            path = Path(spec[5:]).absolute()
            inputs.append(FileTail(path, intake, positions, once, a.rotate_wait_s))
        elif spec.startswith(("http://", "https://")):
            url = urlsplit(spec)
            if url.hostname is None or url.port is None:
                raise ConfigError(f"--input {spec}: an HTTP input needs HOST:PORT")
            if spec.startswith("https://") and not a.tls_cert:
                raise ConfigError(f"--input {spec}: https needs INGEST_AGENT__TLS_CERT/TLS_KEY")
            inputs.append(
                HttpReceiver(
                    url.hostname,
                    url.port,
                    intake,
                    a.http_max_body_bytes,
                    a.tls_cert,
                    a.tls_key,
                    a.tls_client_ca,
                )
            )
        else:
            raise ConfigError(f"--input {spec}: use file:PATH, http://HOST:PORT or stdin")
    if not inputs:
        raise ConfigError("at least one --input is needed")
    return inputs


@dataclass
class AgentExit:
    """What ``run_agent`` left behind: bytes still in the spool (Kafka did not take them
    within the drain deadline) and, with ``--once``, files that end in a partial line."""

    spooled_bytes: int
    partial_lines: list[str]


async def run_agent(settings: AgentSettings, specs: list[str], once: bool = False) -> AgentExit:
    """Run the agent until SIGTERM (or, ``once``, until the inputs are read to the end)."""
    a, k = settings.agent, settings.kafka
    # A broker that refuses our credentials stops the agent before it reads anything; one
    # that is down is waited for, with the alerts in the spool.
    await check_access(k)
    host = a.hostname or socket.gethostname()
    spool = Spool(a.state_dir / "spool", a.spool_max_bytes)
    intake = Intake(spool, a.state_dir / "rejected.jsonl", a.max_alert_bytes)
    positions = Positions(a.state_dir)
    inputs = build_inputs(specs, settings, intake, positions, once)

    def producer() -> AIOKafkaProducer:
        return AIOKafkaProducer(
            **k.client_kwargs(),
            acks="all",
            enable_idempotence=True,
            compression_type=None if k.compression == "none" else k.compression,
            max_batch_size=a.batch_bytes,
            max_request_size=a.batch_bytes + 65536,
            linger_ms=5,
            request_timeout_ms=15000,
        )

    shipper = KafkaShipper(
        producer, spool, k.topic, host, a.batch_bytes, lambda e: intake.reject(e.input, e.value)
    )
    stop_inputs, stop_shipper = asyncio.Event(), asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop_inputs.set)
    runner = await metrics.serve(
        settings.metrics_port, lambda: shipper.connected, lambda: _spool_failure(spool)
    )
    ship_task = asyncio.create_task(shipper.run(stop_shipper))
    log.info("agent started", extra={"inputs": [i.name for i in inputs], "host": host})
    try:
        tasks = [asyncio.create_task(i.run(stop_inputs)) for i in inputs]
        done_inputs: asyncio.Future[Any] = asyncio.gather(*tasks)
        stopper: asyncio.Future[Any] = asyncio.create_task(stop_inputs.wait())
        await asyncio.wait([done_inputs, stopper], return_when=asyncio.FIRST_COMPLETED)
        stop_inputs.set()
        await done_inputs  # inputs save their positions on the way out
        stopper.cancel()
        stop_shipper.set()
        try:
            await asyncio.wait_for(asyncio.shield(ship_task), timeout=a.drain_timeout_s)
        except TimeoutError:
            log.warning("drain deadline passed; the rest stays spooled for the next start")
            ship_task.cancel()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if not ship_task.done():
            ship_task.cancel()
        await asyncio.gather(ship_task, return_exceptions=True)
        await shipper.close()
        spool.close()  # fsyncs: positions never claim more than the spool holds on disk
        if spool.failed is None:
            positions.save()
        if runner is not None:
            await runner.cleanup()
    left = spool.pending_bytes
    log.info("agent stopped", extra={"spooled_bytes_left": left})
    partial = [
        f"{i.name} ends in a partial line ({size} bytes at offset {offset})"
        for i in inputs
        if isinstance(i, FileTail)
        for offset, size in i.partial_lines
    ]
    return AgentExit(left, partial)


def _spool_failure(spool: Spool) -> str | None:
    """Why the agent must be restarted (its /healthz fails, so Kubernetes does it)."""
    if spool.failed is None:
        return None
    return f"spool fsync failed ({spool.failed}); restart the agent\n"
