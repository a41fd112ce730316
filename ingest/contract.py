"""The Kafka message contract between the agent and the consumer.

Value: the alert's bytes exactly as Falco wrote them. Key: the agent's host name.
Headers: the names below, values UTF-8.
"""

HOST = "falco-ingest.host"
VERSION = "falco-ingest.version"
INPUT = "falco-ingest.input"
RECEIVED = "falco-ingest.received"
