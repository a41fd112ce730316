"""The ISM retention policy (ilm/) on a cluster that has the index-management plugin: its
rendered body, what the cluster holds, and moving existing indices onto it.

ISM returns a policy with fields of its own added (policy_id, last_updated_time,
schema_version, error_notification, ...), so only what git sets is compared."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from opensearchpy import AsyncOpenSearch, NotFoundError, TransportError

from ingest.config import OpsSettings
from ingest.ops.resources import ROOT, Resource, canonical, render

POLICIES = "/_plugins/_ism/policies"
RETRY_DELAY = "10m"  # first wait after a failed snapshot; exponential after that


def policy_id(prefix: str) -> str:
    return f"{prefix}-retention"


def policy_resource(settings: OpsSettings) -> Resource:
    prefix = settings.opensearch.index_prefix
    values = {
        "prefix": prefix,
        "hot_age": f"{settings.hot_retention_days}d",
        "retry_delay": RETRY_DELAY,
        "repository": settings.archive_repository,
    }
    root = settings.resources_dir or ROOT
    body = render((root / "ilm" / "falco-retention.json").read_text(), values)
    return Resource("ism_policy", policy_id(prefix), f"{POLICIES}/{policy_id(prefix)}", body)


async def installed(client: AsyncOpenSearch) -> bool:
    """Whether the node serves ISM's REST API (a node without it answers 400, no handler)."""
    try:
        await client.transport.perform_request("GET", POLICIES, params={"size": 1})
    except NotFoundError:
        return True  # ISM answers, its config index is not made yet
    except TransportError as exc:
        if exc.status_code == 400 and "no handler" in str(exc.info):
            return False
        raise
    return True


@dataclass(frozen=True)
class Held:
    """The policy as the cluster holds it."""

    body: dict[str, Any]  # {"policy": {...}}, ISM's own fields included
    version: int | None
    seq_no: int
    primary_term: int

    @property
    def condition(self) -> str:
        """The query that makes an update conditional on the policy not having changed
        since it was read (ISM refuses an update without it)."""
        return f"?if_seq_no={self.seq_no}&if_primary_term={self.primary_term}"


async def current(client: AsyncOpenSearch, res: Resource) -> Held | None:
    try:
        got = await client.transport.perform_request("GET", res.path)
    except NotFoundError:
        return None
    body = got.get("policy", {})
    if "states" not in body and "policy" in body:  # some versions nest it once more
        body = body["policy"]
    return Held({"policy": body}, got.get("_version"), got["_seq_no"], got["_primary_term"])


def drift(res: Resource, held: Held) -> list[str]:
    """Where the held policy differs from git's, ``schema_version`` aside (ISM keeps its
    own in that field)."""
    policy = {k: v for k, v in res.body["policy"].items() if k != "schema_version"}
    return differences({"policy": policy}, held.body)


def differences(desired: Any, have: Any, path: str = "") -> list[str]:
    """Where ``have`` differs from ``desired``, looking only at what ``desired`` sets."""
    if isinstance(desired, dict):
        if not isinstance(have, dict):
            return [path or "."]
        out = []
        for key, value in desired.items():
            out += differences(value, have.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(desired, list):
        if not isinstance(have, list) or len(have) != len(desired):
            return [path]
        out = []
        for i, (d, h) in enumerate(zip(desired, have, strict=True)):
            out += differences(d, h, f"{path}[{i}]")
        return out
    return [] if canonical(desired) == canonical(have) else [path]


def conditional(res: Resource, held: Held) -> Resource:
    return dataclasses.replace(res, path=res.path + held.condition)


async def attach(client: AsyncOpenSearch, prefix: str, updated: bool) -> None:
    """Existing daily indices onto the policy: ``ism_template`` only reaches indices created
    after it, and an updated policy reaches managed indices only through change_policy."""
    body = {"policy_id": policy_id(prefix)}
    pattern = f"{prefix}-*"
    if updated:
        await client.transport.perform_request(
            "POST", f"/_plugins/_ism/change_policy/{pattern}", body=body
        )
    # indices that already have a policy are reported as failures and left as they are
    await client.transport.perform_request("POST", f"/_plugins/_ism/add/{pattern}", body=body)
