"""Apache Kafka in KRaft mode (one broker, or three for a replicated stack), from the jars on
Maven Central."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from ingest.errors import StackError
from ingest.stack import fetch, process
from ingest.stack.layout import Layout

KAFKA_VERSION = "4.1.1"
_COORDS = [
    f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}",
    # Kafka's pom pins slf4j 1.7; the log4j2 binding below needs the 2.x API.
    "org.slf4j:slf4j-api:2.0.16",
    "org.apache.logging.log4j:log4j-slf4j2-impl:2.24.3",
    "org.apache.logging.log4j:log4j-core:2.24.3",
]

_LOG4J = """status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
"""


TLS_SETTING = "INGEST_STACK_KAFKA_TLS_DIR"


class Kafka:
    """The broker. With ``INGEST_STACK_KAFKA_TLS_DIR`` naming a folder that holds ``ca.pem``
    and the broker's ``broker.pem`` (its key and certificate chain, PEM), it also listens
    with SASL_SSL (SCRAM-SHA-512; users made with ``add_scram_user``) on port + 2 and with
    SSL requiring a client certificate signed by that CA on port + 3."""

    def __init__(self, layout: Layout, node: int = 1) -> None:
        self.layout = layout
        self.node = node
        self.name = "kafka" if node == 1 else f"kafka-{node}"
        self.dir = layout.root / self.name
        self.port = _broker_port(layout, node)
        self.pid_file = self.dir / "kafka.pid"
        self.log = self.dir / "server.log"
        self.stdout = self.dir / "stdout.log"
        tls = os.environ.get(TLS_SETTING)
        self.tls = Path(tls) if tls else None

    @property
    def sasl_ssl(self) -> str:
        return f"127.0.0.1:{self.port + 2}"

    @property
    def mtls(self) -> str:
        return f"127.0.0.1:{self.port + 3}"

    def _listeners(self, ctl: int) -> list[str]:
        names = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        protocols = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
        extra: list[str] = []
        if self.tls is not None:
            names += [f"SASL_SSL://{self.sasl_ssl}", f"SSL://{self.mtls}"]
            protocols += ",SASL_SSL:SASL_SSL,SSL:SSL"
            extra = [
                "ssl.keystore.type=PEM",
                f"ssl.keystore.location={self.tls / 'broker.pem'}",
                "ssl.truststore.type=PEM",
                f"ssl.truststore.location={self.tls / 'ca.pem'}",
                "listener.name.ssl.ssl.client.auth=required",
                "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            ]
        return [
            f"listeners={','.join(names)},CONTROLLER://127.0.0.1:{ctl}",
            f"advertised.listeners={','.join(names)}",
            f"listener.security.protocol.map={protocols}",
            *extra,
        ]

    def add_scram_user(self, user: str, password: str) -> None:
        """A SCRAM-SHA-512 user, made with the broker's own tool (kafka-configs)."""
        libs = self.fetch()
        argv = self._java(
            libs,
            self.dir / "log4j2.properties",
            "kafka.admin.ConfigCommand",
            "--bootstrap-server",
            self.bootstrap,
            "--alter",
            "--entity-type",
            "users",
            "--entity-name",
            user,
            "--add-config",
            f"SCRAM-SHA-512=[iterations=4096,password={password}]",
        )
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise StackError(self.name, f"kafka-configs for user {user}: {done.stderr[-300:]}")

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        brokers = self.layout.kafka_brokers
        servers = ",".join(
            f"127.0.0.1:{_broker_port(self.layout, n)}" for n in range(1, brokers + 1)
        )
        env = {"INGEST_KAFKA__BOOTSTRAP_SERVERS": servers}
        if brokers > 1:  # topics made by setup and the consumer: a copy on every broker
            env["INGEST_KAFKA__REPLICATION_FACTOR"] = str(brokers)
            env["INGEST_STACK_KAFKA_BROKERS"] = str(brokers)
        return env

    def fetch(self) -> Path:
        return fetch.jars_with_dependencies(
            self.name,
            _COORDS,
            self.layout.cache / f"kafka-{KAFKA_VERSION}",
            self.layout.cache / "fetch.log",
        )

    def _configure(self) -> tuple[Path, Path]:
        data = self.dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = self.dir / "server.properties"
        ctl = self.port + 1
        brokers = self.layout.kafka_brokers
        voters = ",".join(
            f"{n}@127.0.0.1:{_broker_port(self.layout, n) + 1}" for n in range(1, brokers + 1)
        )
        copies = min(3, brokers)
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    f"node.id={self.node}",
                    f"controller.quorum.voters={voters}",
                    *self._listeners(ctl),
                    "controller.listener.names=CONTROLLER",
                    f"log.dirs={data}",
                    "num.partitions=3",
                    f"offsets.topic.replication.factor={copies}",
                    "offsets.topic.num.partitions=6",
                    f"transaction.state.log.replication.factor={copies}",
                    f"transaction.state.log.min.isr={min(2, copies)}",
                    f"share.coordinator.state.topic.replication.factor={copies}",
                    f"share.coordinator.state.topic.min.isr={min(2, copies)}",
                    f"default.replication.factor={copies}",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=true",
                    "message.max.bytes=1048588",
                    "",
                ]
            )
        )
        log4j = self.dir / "log4j2.properties"
        log4j.write_text(_LOG4J.format(log=self.log))
        return props, log4j

    def _java(self, libs: Path, log4j: Path, *args: str, heap: str = "256m") -> list[str]:
        java = shutil.which("java") or "java"
        return [
            java,
            f"-Xmx{heap}",
            f"-Xms{heap}",
            "-XX:+UseG1GC",
            f"-Dlog4j2.configurationFile={log4j}",
            "-cp",
            f"{libs}/*",
            *args,
        ]

    def start(self) -> None:
        if process.read_pid(self.pid_file):
            return
        if process.port_open("127.0.0.1", self.port):
            raise StackError(self.name, f"port {self.port} is taken by another process")
        libs = self.fetch()
        props, log4j = self._configure()
        cluster_id = self._storage_for_this_cluster()
        if not (self.dir / "data" / "meta.properties").exists():
            fmt = self._java(
                libs, log4j, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)
            )
            res = subprocess.run(fmt, capture_output=True, text=True, check=False)
            if res.returncode != 0:
                raise StackError(self.name, "storage format failed: " + res.stderr[-500:])
        heap = os.environ.get("INGEST_STACK_KAFKA_HEAP", "512m")
        argv = self._java(libs, log4j, "kafka.Kafka", str(props), heap=heap)
        process.spawn(argv, log=self.stdout, pid_file=self.pid_file, cwd=self.dir)

    def _storage_for_this_cluster(self) -> str:
        """This stack's cluster id; the broker's storage is emptied if it was formatted for
        another shape of this stack (one broker, now three, or back): its quorum is not this
        one's and KRaft would refuse to start on it."""
        cluster_id = self._cluster_id()
        meta = self.dir / "data" / "meta.properties"
        if meta.exists() and f"cluster.id={cluster_id}" not in _read(meta).splitlines():
            shutil.rmtree(self.dir / "data")
            (self.dir / "data").mkdir()
        return cluster_id

    def _cluster_id(self) -> str:
        """One KRaft cluster id for every broker of this stack, made by the first to start;
        a new one when the number of brokers changed (a new quorum is a new cluster)."""
        file = self.layout.root / "kafka-cluster-id"
        shape = self.layout.root / "kafka-brokers"
        brokers = str(self.layout.kafka_brokers)
        if not file.exists() and brokers == "1":
            # a one-broker stack made before these files existed keeps its data
            formatted = _read(self.dir / "data" / "meta.properties").splitlines()
            ids = [ln.partition("=")[2] for ln in formatted if ln.startswith("cluster.id=")]
            if ids:
                file.write_text(ids[0])
                shape.write_text(brokers)
        if not file.exists() or _read(shape).strip() != brokers:
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_text(_kraft_id())
            shape.write_text(brokers)
        return file.read_text().strip()

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = process.read_pid(self.pid_file)
            if pid is None:
                raise StackError(self.name, "process exited during start", str(self.log))
            if process.port_open("127.0.0.1", self.port) and "Kafka Server started" in _read(
                self.log
            ):
                return
            time.sleep(0.25)
        raise StackError(self.name, f"not ready after {timeout:.0f}s", str(self.log))

    def health(self) -> tuple[bool, str]:
        pid = process.read_pid(self.pid_file)
        if pid is None:
            return False, "not running"
        if not process.port_open("127.0.0.1", self.port):
            return False, f"pid {pid}, port {self.port} closed"
        return True, f"pid {pid}, {self.bootstrap}, Kafka {KAFKA_VERSION} (KRaft)"

    def stop(self) -> bool:
        return process.stop(self.pid_file, timeout=30)


def _broker_port(layout: Layout, node: int) -> int:
    return layout.kafka_port + 10 * (node - 1)


def _kraft_id() -> str:
    """A Kafka cluster id: 16 random bytes, base64url without padding, never starting with
    "-" (as Kafka's own Uuid.randomUuid: the storage tool would read it as an option; one
    id in 64 did, and a CI run failed on it)."""
    import base64

    while True:
        made = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not made.startswith("-"):
            return made


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
