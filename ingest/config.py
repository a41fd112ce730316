"""Settings, one pydantic-settings model per deployable.

Values come from (highest first) keyword arguments, ``INGEST_``-prefixed environment
variables with ``__`` for nesting (``INGEST_KAFKA__BOOTSTRAP_SERVERS``), then a TOML
config file named by ``INGEST_CONFIG_FILE`` or ``--config``. Unknown keys are errors,
so a typo fails at start instead of being ignored.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from ingest.errors import ConfigError

T = TypeVar("T", bound=BaseSettings)

_INDEX_PREFIX = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,60}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _secret_from_file(value: SecretStr | None, file: Path | None, name: str) -> SecretStr | None:
    """A password given as itself or as a file holding it (a Kubernetes Secret mounted as a
    file), not both. The file's content without its line end; the error names the setting,
    never the value."""
    if file is None:
        return value
    if value is not None:
        raise ValueError(f"{name} and {name}_file are both set: give one")
    try:
        text = file.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ValueError(f"{name}_file {file}: {exc.strerror}") from None
    if not text:
        raise ValueError(f"{name}_file {file} is empty")
    return SecretStr(text)


class KafkaSettings(_Strict):
    bootstrap_servers: str = "127.0.0.1:29092"
    topic: str = "falco.events"
    dlq_topic: str = "falco.events.dlq"
    group_id: str = "falco-ingest"
    client_id: str = "falco-ingest"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    sasl_password_file: Path | None = None  # a mounted Secret: read at start
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # zstd: gzip's ratio on alerts for a tenth of its CPU (bench/README.md, "Compression")
    compression: Literal["none", "gzip", "lz4", "zstd", "snappy"] = "zstd"
    create_topics: bool = True
    topic_partitions: int = Field(default=6, ge=1, le=1000)
    replication_factor: int = Field(default=1, ge=1, le=7)
    # How long Kafka keeps alerts: the longest consumer outage that loses nothing. The DLQ
    # keeps its records until someone has looked at them (-1: no time limit).
    topic_retention_ms: int = Field(default=7 * 86_400_000, ge=3_600_000)
    dlq_retention_ms: int = Field(default=-1, ge=-1)

    def topic_configs(self, topic: str) -> dict[str, str]:
        """Settings of a topic this project creates: its retention, and acks=all meaning
        two copies once there are two replicas."""
        retention = self.dlq_retention_ms if topic == self.dlq_topic else self.topic_retention_ms
        return {
            "retention.ms": str(retention),
            "min.insync.replicas": str(min(2, self.replication_factor)),
        }

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        secret = _secret_from_file(
            self.sasl_password, self.sasl_password_file, "kafka.sasl_password"
        )
        object.__setattr__(self, "sasl_password", secret)
        if self.security_protocol.startswith("SASL"):
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
                raise ValueError(
                    "kafka.security_protocol SASL_* needs kafka.sasl_mechanism, "
                    "kafka.sasl_username and kafka.sasl_password"
                )
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments shared by aiokafka producers, consumers and admins."""
        kw: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers,
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
            )
        if self.security_protocol.startswith("SASL"):
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return kw


class OpenSearchSettings(_Strict):
    url: str = Field(default="http://127.0.0.1:29200", pattern=r"^https?://[^/\s]+/?$")
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None  # a mounted Secret: read at start
    ca_certs: Path | None = None
    verify_certs: bool = True
    index_prefix: str = "falco"
    request_timeout_s: float = Field(default=60.0, gt=0)
    # The consumer refuses to start without the index template `setup` makes.
    require_template: bool = True

    @model_validator(mode="after")
    def _check(self) -> OpenSearchSettings:
        secret = _secret_from_file(self.password, self.password_file, "opensearch.password")
        object.__setattr__(self, "password", secret)
        if not _INDEX_PREFIX.match(self.index_prefix):
            raise ValueError(
                "opensearch.index_prefix must be lowercase letters, digits, '-', '_' or '.'"
            )
        if (self.username is None) != (self.password is None):
            raise ValueError("opensearch.username and opensearch.password go together")
        return self


class DashboardsSettings(_Strict):
    """OpenSearch Dashboards, where `setup` imports the "Falco Overview" saved objects. It
    is reached with the OpenSearch settings' credentials and CA (one user for both)."""

    # Unset: nothing is imported. May carry Dashboards' base path (https://host/dashboards).
    url: str | None = Field(default=None, pattern=r"^https?://[^/\s]+(/[^\s]*)?$")
    # The security plugin's tenant to import into (its `securitytenant` header): `global`,
    # `private` or a custom tenant's name; unset: the user's default tenant.
    tenant: str | None = Field(default=None, min_length=1)
    request_timeout_s: float = Field(default=30.0, gt=0)


class S3Settings(_Strict):
    endpoint_url: str | None = None
    bucket: str = "falco-archive"
    region: str = "us-east-1"
    access_key_id: str = "testing"
    secret_access_key: SecretStr = SecretStr("testing")


class ConsumerTuning(_Strict):
    batch_max_docs: int = Field(default=2000, ge=1, le=100_000)
    batch_max_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    linger_ms: int = Field(default=200, ge=0, le=60_000)
    max_inflight_bulks: int = Field(default=3, ge=1, le=64)
    fetch_max_records: int = Field(default=5000, ge=1)
    drain_timeout_s: float = Field(default=20.0, gt=0)
    session_timeout_ms: int = Field(default=45_000, ge=6_000)
    # Offsets of finished batches are committed at most this often (and always on a
    # rebalance and at stop); 0 commits after every batch. A commit costs the broker more
    # CPU than the batch it covers is worth committing at once (bench/commit.py, and its
    # figures in bench/README.md).
    commit_interval_ms: int = Field(default=5_000, ge=0, le=60_000)
    retry_initial_s: float = Field(default=0.2, gt=0)
    retry_max_s: float = Field(default=30.0, gt=0)
    max_event_age_days: int = Field(default=365, ge=1)
    # At most a day: the ISM policy keeps a daily index hot for a day more than its day and
    # retention, for the index an alert that far ahead creates early (ism.HOT_MARGIN_DAYS).
    max_future_s: int = Field(default=86_400, ge=0, le=86_400)
    # Count every batch's stored and dead-lettered alerts per day in ledger-<prefix>, which
    # `audit retention` reconciles with the indices and the archive (setup makes the index).
    ledger: bool = True

    @model_validator(mode="after")
    def _drain_fits_session(self) -> ConsumerTuning:
        if self.drain_timeout_s * 1000 >= self.session_timeout_ms:
            raise ValueError(
                "consumer.drain_timeout_s must be shorter than consumer.session_timeout_ms"
            )
        return self


class AgentTuning(_Strict):
    state_dir: Path = Path("/var/lib/falco-ingest")
    hostname: str | None = None
    spool_max_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    max_alert_bytes: int = Field(default=900_000, ge=1024, le=100 * 1024 * 1024)
    http_max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    batch_bytes: int = Field(default=1_000_000, ge=16 * 1024)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    drain_timeout_s: float = Field(default=10.0, gt=0)
    rotate_wait_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> AgentTuning:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("agent.tls_cert and agent.tls_key go together")
        if self.tls_client_ca and not self.tls_cert:
            raise ValueError("agent.tls_client_ca needs agent.tls_cert and agent.tls_key")
        if self.max_alert_bytes >= self.batch_bytes:
            raise ValueError("agent.max_alert_bytes must be below agent.batch_bytes")
        return self


class _Base(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="INGEST_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("INGEST_CONFIG_FILE")
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)


class ConsumerSettings(_Base):
    """The consumer fleet: Kafka topic -> OpenSearch."""

    kafka: KafkaSettings = KafkaSettings()
    opensearch: OpenSearchSettings = OpenSearchSettings()
    consumer: ConsumerTuning = ConsumerTuning()
    metrics_port: int = Field(default=9108, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class AgentSettings(_Base):
    """One per host: Falco output -> disk spool -> Kafka."""

    kafka: KafkaSettings = KafkaSettings()
    agent: AgentTuning = AgentTuning()
    metrics_port: int = Field(default=9109, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class OpsSettings(_Base):
    """The platform team's tools: setup, archive, audit."""

    kafka: KafkaSettings = KafkaSettings()
    opensearch: OpenSearchSettings = OpenSearchSettings()
    s3: S3Settings = S3Settings()
    dashboards: DashboardsSettings = DashboardsSettings()
    # The reviewed JSON (mappings/, index_templates/, ilm/) when kept elsewhere than in the
    # package, e.g. a mounted ConfigMap; by default the copy that came with the package.
    resources_dir: Path | None = None
    archive_repository: str = "falco-archive"
    # fs: a shared directory under the nodes' path.repo (archive_location); s3: the bucket
    # of s3.bucket under archive_location as base path (needs the repository-s3 plugin and
    # the nodes' s3.client.default settings: endpoint and credentials live on the nodes).
    archive_type: Literal["fs", "s3"] = "fs"
    archive_location: str | None = None
    archive_retention_months: int = Field(default=30, ge=1, le=240)
    hot_retention_days: int = Field(default=365, ge=1)
    restored_retention_days: int = Field(default=30, ge=1)
    index_shards: int = Field(default=1, ge=1, le=64)
    index_replicas: int = Field(default=0, ge=0, le=8)
    index_refresh_interval: str = Field(default="5s", pattern=r"^(-1|\d+(ms|s|m))$")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _resources_complete(self) -> OpsSettings:
        if self.resources_dir is not None:
            missing = [
                d
                for d in ("mappings", "index_templates", "ilm")
                if not (self.resources_dir / d).is_dir()
            ]
            if self.dashboards.url and not (self.resources_dir / "dashboards").is_dir():
                missing.append("dashboards (dashboards.url is set)")
            if missing:
                raise ValueError(
                    f"resources_dir {self.resources_dir} has no {', '.join(missing)} folder"
                )
        return self


_OTHER_VARS = ("INGEST_CONFIG_FILE", "INGEST_STACK_")


def _model_of(annotation: Any) -> type[BaseModel] | None:
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _unknown_env() -> list[str]:
    """``INGEST_*`` variables no deployable knows: a typo must not be silently ignored.

    Sections of other deployables are allowed (one env file may serve the whole fleet)."""
    top: dict[str, type[BaseModel] | None] = {}
    for deployable in (ConsumerSettings, AgentSettings, OpsSettings):
        for name, fld in deployable.model_fields.items():
            top[name] = _model_of(fld.annotation)
    bad = []
    for var in os.environ:
        if not var.startswith("INGEST_") or var.startswith(_OTHER_VARS):
            continue
        path = var[len("INGEST_") :].lower().split("__")
        model: type[BaseModel] | None = None
        known = path[0] in top
        if known:
            model = top[path[0]]
        for part in path[1:]:
            if model is None or part not in model.model_fields:
                known = False
                break
            model = _model_of(model.model_fields[part].annotation)
        if not known:
            bad.append(f"{'.'.join(path)} ({var}): not a setting")
    return bad


def load(cls: type[T], config_file: Path | None = None, **overrides: Any) -> T:
    """Build settings, turning a validation error into a ConfigError naming the setting."""
    unknown = _unknown_env()
    if unknown:
        raise ConfigError("bad setting: " + "; ".join(unknown))
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"config file {config_file} does not exist")
        os.environ["INGEST_CONFIG_FILE"] = str(config_file)
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"]) or "(settings)"
            env = "INGEST_" + "__".join(str(p).upper() for p in err["loc"])
            problems.append(f"{name} ({env}): {err['msg']}")
        raise ConfigError("bad setting: " + "; ".join(problems)) from None
