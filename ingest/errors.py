"""Error types. ``retriable`` tells callers whether trying again can help."""

from __future__ import annotations


class IngestError(Exception):
    """Root of the project's errors."""

    retriable = False


class ConfigError(IngestError):
    """A setting is missing or wrong; the message names it."""


class StackError(IngestError):
    """A local service could not be fetched or started; says which, why, and where its log is."""

    def __init__(self, component: str, reason: str, log: str | None = None) -> None:
        where = f" (log: {log})" if log else ""
        super().__init__(f"{component}: {reason}{where}")
        self.component = component


class SinkUnavailable(IngestError):
    """OpenSearch did not answer or answered 5xx/429 for a whole request."""

    retriable = True


class AccessRefused(IngestError):
    """A service refused our credentials or permissions (401/403): retrying cannot help,
    the component stops (exit code 3) with nothing committed past what was stored."""


class DeadLetterError(IngestError):
    """The dead-letter topic did not accept a record: its offset must not be committed."""

    retriable = True


class DashboardsFailed(IngestError):
    """OpenSearch Dashboards did not answer, or answered a request with an error other than
    401/403 (those are AccessRefused); `setup` stops with exit code 3."""
