"""The Kafka message contract between the agent and the consumer.

Value: the alert's bytes exactly as Falco wrote them. Key: the agent's host name.
Header ``AGENT``: the agent's lineage as one JSON object, UTF-8, with the string fields
``LINEAGE`` (the documents carry it as ``@ingest.agent``).
"""

AGENT = "falco-ingest.agent"
LINEAGE = ("host", "version", "input", "received")

# Earlier agents wrote the lineage as four headers, values UTF-8; the consumer still
# reads them (a fleet's agents are upgraded host by host, and Kafka keeps their records).
HOST = "falco-ingest.host"
VERSION = "falco-ingest.version"
INPUT = "falco-ingest.input"
RECEIVED = "falco-ingest.received"
