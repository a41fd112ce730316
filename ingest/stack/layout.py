"""Where the local stack keeps its cache, state, logs and pid files, and on which ports.

The ports (29xxx, and what each service adds to its own: controller, TLS listeners,
transport) lie below Linux's ephemeral range (32768-60999): in it, the local port of any
outgoing connection on the machine can hold a node's port when the node starts (a CI run
lost its replicated stack's node 1 to "Address already in use" on 39350)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path


def _port(name: str, default: int) -> int:
    return int(os.environ.get(f"INGEST_STACK_{name}_PORT", default))


def _count(name: str, most: int) -> int:
    """``INGEST_STACK_<name>``: how many of a service (1 .. ``most``), 1 when unset."""
    value = os.environ.get(f"INGEST_STACK_{name}", "1")
    if not value.isdigit() or not 1 <= int(value) <= most:
        from ingest.errors import StackError

        raise StackError("stack", f"INGEST_STACK_{name}={value}: give 1 to {most}")
    return int(value)


@dataclass(frozen=True)
class Layout:
    root: Path
    kafka_port: int
    opensearch_port: int
    s3_port: int
    # A replicated stack (issue 21): broker n listens on kafka_port + 10 (n - 1), node n of
    # OpenSearch on opensearch_port + n - 1. The default is one of each.
    kafka_brokers: int = 1
    opensearch_nodes: int = 1
    downloads: Path | None = None  # another stack's cache, shared (else root/cache)
    # OpenSearch's indexing_pressure.memory.limit (a static node setting, 10% of the heap
    # by default): the bytes of indexing in flight past which a node answers 429.
    indexing_limit: str | None = None

    @classmethod
    def default(cls) -> Layout:
        root = Path(os.environ.get("INGEST_STACK_DIR", Path.cwd() / ".stack")).resolve()
        return cls(
            root=root,
            kafka_port=_port("KAFKA", 29092),
            opensearch_port=_port("OPENSEARCH", 29200),
            s3_port=_port("S3", 29000),
            kafka_brokers=_count("KAFKA_BROKERS", 3),
            opensearch_nodes=_count("OPENSEARCH_NODES", 2),
        )

    @classmethod
    def replicated(cls) -> Layout:
        """Three brokers and two nodes in ``<stack folder>-replicated`` on ports of their own,
        beside the default stack: the one the chaos run (bench/chaos.py) and its tests use."""
        root = Path(os.environ.get("INGEST_STACK_DIR", Path.cwd() / ".stack")).resolve()
        return cls(
            root.with_name(root.name + "-replicated"),
            kafka_port=29160,
            opensearch_port=29250,
            s3_port=29040,
            kafka_brokers=3,
            opensearch_nodes=2,
            downloads=root / "cache",
            indexing_limit="2mb",  # so that the chaos run meets real 429s
        )

    @property
    def cache(self) -> Path:
        return Path(os.environ.get("INGEST_STACK_CACHE", self.downloads or self.root / "cache"))

    @property
    def env_file(self) -> Path:
        return self.root / "env"

    @property
    def opensearch_home(self) -> Path:
        """OpenSearch's node folder. As root it runs as its own user, which must be able to
        reach the folder, so it lives outside root's (possibly private) home."""
        if os.geteuid() != 0:
            return self.root / "opensearch"
        key = hashlib.sha256(str(self.root).encode()).hexdigest()[:10]
        return Path("/var/tmp") / f"falco-ingest-{key}" / "opensearch"  # noqa: S108
