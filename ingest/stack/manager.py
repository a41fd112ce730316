"""`falco-ingest stack up | down | status`: the whole local stack at once."""

from __future__ import annotations

import dataclasses
import shlex
import time
from collections.abc import Callable
from typing import Protocol

from ingest.stack.kafka import Kafka
from ingest.stack.layout import Layout
from ingest.stack.opensearch import OpenSearch
from ingest.stack.s3 import S3


class Service(Protocol):
    name: str

    def start(self) -> None: ...
    def wait(self, timeout: float) -> None: ...
    def health(self) -> tuple[bool, str]: ...
    def stop(self) -> bool: ...
    def env(self) -> dict[str, str]: ...


def services(layout: Layout) -> list[Service]:
    kafka: list[Service] = [Kafka(layout, n) for n in range(1, layout.kafka_brokers + 1)]
    nodes: list[Service] = [OpenSearch(layout, n) for n in range(1, layout.opensearch_nodes + 1)]
    return [*kafka, *nodes, S3(layout)]


def up(
    layout: Layout | None = None,
    say: Callable[[str], None] = print,
    timeout: float = 180.0,
) -> dict[str, str]:
    """Start every service that is not running, wait until each answers, write the env file.

    Services are started first and waited for after, so their start-ups overlap.
    """
    layout = layout or Layout.default()
    layout.root.mkdir(parents=True, exist_ok=True)
    started: dict[str, float] = {}
    svcs = services(layout)
    for svc in svcs:
        t0 = time.monotonic()
        if svc.health()[0]:
            say(f"{svc.name}: already running")
            continue
        say(f"{svc.name}: fetching and starting ...")
        svc.start()
        started[svc.name] = t0
    env: dict[str, str] = {}
    for svc in svcs:
        if svc.name in started:
            svc.wait(timeout)
            say(f"{svc.name}: ready in {time.monotonic() - started[svc.name]:.1f}s")
        env.update(svc.env())
    layout.env_file.write_text(
        "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(env.items()))
    )
    say(f"connection settings written to {layout.env_file}")
    return env


def status(layout: Layout | None = None) -> list[tuple[str, bool, str]]:
    layout = layout or Layout.default()
    return [(svc.name, *svc.health()) for svc in services(layout)]


def down(layout: Layout | None = None, say: Callable[[str], None] = print) -> None:
    layout = layout or Layout.default()
    # every broker and node that was started, whatever the counts asked for now
    started = dataclasses.replace(
        layout,
        kafka_brokers=max(layout.kafka_brokers, len(list(layout.root.glob("kafka*/kafka.pid")))),
        opensearch_nodes=max(
            layout.opensearch_nodes, len(list(layout.opensearch_home.glob("opensearch*.pid")))
        ),
    )
    for svc in reversed(services(started)):
        say(f"{svc.name}: {'stopped' if svc.stop() else 'was not running'}")
