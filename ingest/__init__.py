"""falco-ingest: Falco alerts -> Kafka -> OpenSearch without losing one."""

__version__ = "0.1.0"
