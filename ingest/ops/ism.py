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
# ISM counts an index's age from its creation, and a daily index is created by the first
# alert of its day to arrive: at the earliest one day (MAX_FUTURE_S, at most a day) before
# the day starts, when a host's clock runs ahead. Its last alert comes at the day's end. So
# for every alert of day D to stay searchable HOT_RETENTION_DAYS, the index leaves the hot
# tier HOT_RETENTION_DAYS + 2 days after its creation: (D + 1 + hot) - (D - 1) = hot + 2.
HOT_MARGIN_DAYS = 2
# How many index names one add/change_policy request names (its URL stays short).
NAMES_PER_REQUEST = 50


def policy_id(prefix: str) -> str:
    return f"{prefix}-retention"


def policy_resource_for(prefix: str, changes: list[tuple[Any, Resource]]) -> Resource:
    """The policy's resource among a plan's, its path without an update's condition."""
    res = next(r for _, r in changes if r.kind == "ism_policy")
    return dataclasses.replace(res, path=f"{POLICIES}/{policy_id(prefix)}")


def policy_resource(settings: OpsSettings) -> Resource:
    prefix = settings.opensearch.index_prefix
    values = {
        "prefix": prefix,
        "hot_days": str(settings.hot_retention_days),
        "archive_months": str(settings.archive_retention_months),
        "hot_age": f"{settings.hot_retention_days + HOT_MARGIN_DAYS}d",
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


@dataclass(frozen=True)
class Explained:
    """One index of the prefix as ISM's explain shows it."""

    index: str
    policy_id: str | None  # None: not managed
    policy_seq_no: int | None  # the policy version it runs; None until ISM initialized it
    state: str | None  # its state; "-> archive" while transitioning; None before initialized
    action: str | None
    failing: str | None  # why its current step failed (ISM's cause), None if it did not

    def on_version(self, policy: str, seq_no: int) -> bool:
        """Managed by ``policy`` at version ``seq_no`` (or not initialized yet: ISM
        initializes an index with the policy as it is then)."""
        return self.policy_id == policy and self.policy_seq_no in (None, seq_no)


async def explain(client: AsyncOpenSearch, prefix: str) -> dict[str, Explained]:
    """Every index of ``prefix`` and how ISM manages it (none when no index exists: ISM
    answers that with 400 "no documents to get")."""
    try:
        got = await client.transport.perform_request("GET", f"/_plugins/_ism/explain/{prefix}-*")
    except TransportError as exc:
        if exc.status_code == 400 and "no documents to get" in str(exc.info):
            return {}
        raise
    return {
        name: _explained(name, info)
        for name, info in got.items()
        if isinstance(info, dict) and name != "total_managed_indices"
    }


def _explained(name: str, info: dict[str, Any]) -> Explained:
    state = (info.get("state") or {}).get("name")
    if info.get("transition_to"):
        state = f"-> {info['transition_to']}"
    action = info.get("action") or {}
    step = info.get("step") or {}
    failing = None
    if step.get("step_status") == "failed" or action.get("failed"):
        why = info.get("info") or {}
        failing = str(why.get("cause") or why.get("message") or "failed")
        retries = action.get("consumed_retries")
        if retries:
            failing += f" ({retries} retries so far)"
    seq_no = info.get("policy_seq_no")
    return Explained(
        name,
        info.get("policy_id") or info.get("index.plugins.index_state_management.policy_id"),
        seq_no if isinstance(seq_no, int) else None,
        state,
        action.get("name"),
        failing,
    )


@dataclass(frozen=True)
class Refused:
    index: str
    reason: str


async def attach(
    client: AsyncOpenSearch, prefix: str, indices: dict[str, Explained], seq_no: int
) -> list[Refused]:
    """The prefix's indices onto the policy at ``seq_no``: those without a policy with
    ``add`` (``ism_template`` only reaches indices created after it), those on an earlier
    version of it with ``change_policy`` (ISM does not move them by itself). Indices a
    person put on another policy are left alone (the audit names them). Each index is
    named: a pattern would reach those too, and ISM answers 400 for a pattern that matches
    no index. Returns what ISM refused."""
    ours = policy_id(prefix)
    unmanaged = sorted(i.index for i in indices.values() if i.policy_id is None)
    outdated = sorted(
        i.index for i in indices.values() if i.policy_id == ours and not i.on_version(ours, seq_no)
    )
    refused: list[Refused] = []
    for verb, names in (("add", unmanaged), ("change_policy", outdated)):
        for start in range(0, len(names), NAMES_PER_REQUEST):
            batch = ",".join(names[start : start + NAMES_PER_REQUEST])
            got = await client.transport.perform_request(
                "POST", f"/_plugins/_ism/{verb}/{batch}", body={"policy_id": ours}
            )
            refused += [
                Refused(str(f.get("index_name")), str(f.get("reason")))
                for f in got.get("failed_indices") or []
            ]
    return refused
