"""Backoff for the I/O edges: exponential with jitter, retrying only retriable errors."""

from __future__ import annotations

import logging

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential,
    wait_random,
)


def retrying(
    initial_s: float, max_s: float, log: logging.Logger, level: int, what: str
) -> AsyncRetrying:
    """Retry forever while the error says ``retriable``; the caller cancels to give up.
    Each retry is logged at ``level`` naming ``what`` was retried, the error and the wait."""

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.log(
            level,
            f"{what} failed, retrying",
            extra={
                "attempt": state.attempt_number,
                "wait_s": round(state.upcoming_sleep, 2),
                "error": f"{type(exc).__name__}: {exc}"[:300],
            },
        )

    return AsyncRetrying(
        retry=retry_if_exception(lambda e: bool(getattr(e, "retriable", False))),
        wait=wait_exponential(multiplier=initial_s, max=max_s) + wait_random(0, initial_s),
        before_sleep=before_sleep,
        reraise=True,
    )
