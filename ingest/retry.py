"""Backoff for the I/O edges: exponential with jitter, retrying only retriable errors."""

from __future__ import annotations

import logging

from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception,
    wait_exponential,
    wait_random,
)


def retrying(initial_s: float, max_s: float, log: logging.Logger, level: int) -> AsyncRetrying:
    """Retry forever while the error says ``retriable``; the caller cancels to give up."""
    return AsyncRetrying(
        retry=retry_if_exception(lambda e: bool(getattr(e, "retriable", False))),
        wait=wait_exponential(multiplier=initial_s, max=max_s) + wait_random(0, initial_s),
        before_sleep=before_sleep_log(log, level),
        reraise=True,
    )
