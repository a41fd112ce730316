"""`falco-ingest setup [--plan]`: make the cluster match the JSON in git, showing the plan first."""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from typing import Any

from opensearchpy import AsyncOpenSearch, NotFoundError

from ingest.config import OpsSettings
from ingest.consumer.topics import ensure_topics, set_topic_configs, topic_drift
from ingest.kafka_access import check_access
from ingest.ops import ism
from ingest.ops.archive import day_of
from ingest.ops.dashboards import Dashboards, import_errors, load_objects
from ingest.ops.dashboards import drift as object_drift
from ingest.ops.resources import ROOT, Resource, canonical, load_resources
from ingest.sink import ledger
from ingest.sink.client import make_client
from ingest.sink.ledger import ledger_index

DRIFT_EXIT = 2
REFUSED_EXIT = 1  # ISM refused to put some indices on the policy (named); run setup again
CHANGES = ("create", "update", "add", "move")  # the actions that change the cluster


@dataclass(frozen=True)
class Change:
    resource: str
    # create | update | none | skip (cannot be applied to this cluster); for the indices of
    # the prefix: add (onto the policy) | move (to its current version) | keep (left alone)
    action: str
    detail: str


async def _current(client: AsyncOpenSearch, res: Resource) -> dict[str, Any] | None:
    try:
        got = await client.transport.perform_request("GET", res.path)
    except NotFoundError:
        return None
    if res.kind == "component_template":
        body: dict[str, Any] = got["component_templates"][0]["component_template"]
        return body
    if res.kind == "index_template":
        body = got["index_templates"][0]["index_template"]
        return body
    return dict(got)


def _diff(desired: dict[str, Any], current: dict[str, Any] | None) -> str | None:
    if current is None:
        return "missing"
    want, have = canonical(desired), canonical(current)
    changed = sorted(k for k in set(want) | set(have) if want.get(k) != have.get(k))
    if not changed:
        return None
    return f"version {current.get('version')} -> {desired.get('version')}; " + _differs(changed)


def _differs(parts: list[str]) -> str:
    """How a plan line names what differs (the first five)."""
    return "differs in " + ", ".join(parts[:5]) + ("" if len(parts) <= 5 else ", ...")


def _repository(settings: OpsSettings) -> dict[str, Any]:
    if settings.archive_type == "s3":
        base_path = settings.archive_location or settings.archive_repository
        return {
            "type": "s3",
            "settings": {"bucket": settings.s3.bucket, "base_path": base_path, "compress": True},
        }
    base = os.environ.get("INGEST_STACK_SNAPSHOT_DIR", "/var/lib/opensearch/snapshots")
    location = settings.archive_location or f"{base}/{settings.archive_repository}"
    return {"type": "fs", "settings": {"location": location, "compress": True}}


async def plan(client: AsyncOpenSearch, settings: OpsSettings) -> list[tuple[Change, Resource]]:
    resources = load_resources(
        settings.opensearch.index_prefix,
        root=settings.resources_dir or ROOT,
        shards=settings.index_shards,
        replicas=settings.index_replicas,
        refresh_interval=settings.index_refresh_interval,
    )
    resources.append(
        Resource(
            "snapshot_repository",
            settings.archive_repository,
            f"/_snapshot/{settings.archive_repository}",
            _repository(settings),
        )
    )
    out = [await _plan_ledger(client, settings)]
    for res in resources:
        current = await _current(client, res)
        if res.kind == "snapshot_repository" and current is not None:
            current = current.get(res.name)
        difference = _diff(res.body, current)
        action = "none" if difference is None else ("create" if current is None else "update")
        out.append((Change(f"{res.kind} {res.name}", action, difference or "in sync"), res))
    out += await _plan_policy(client, settings)
    return out


async def _plan_ledger(client: AsyncOpenSearch, settings: OpsSettings) -> tuple[Change, Resource]:
    """The consumers' ledger index: made with its mapping; a mapping that lacks fields of
    ours gets them (OpenSearch adds fields to a mapping, it changes none)."""
    index = ledger_index(settings.opensearch.index_prefix)
    name = f"ledger_index {index}"
    try:
        got = await client.transport.perform_request("GET", f"/{index}/_mapping")
    except NotFoundError:
        since = await _reconcile_from(client, settings.opensearch.index_prefix)
        body = ledger.index_body(settings.index_replicas, since)
        detail = "missing" + (f"; days from {since} on will be reconciled" if since else "")
        return Change(name, "create", detail), Resource("ledger_index", index, f"/{index}", body)
    have = {k: v for k, v in got[index]["mappings"].items() if k != "_meta"}
    difference = _diff(ledger.MAPPING, have)
    res = Resource("ledger_index", index, f"/{index}/_mapping", ledger.MAPPING)
    if difference is None:
        return Change(name, "none", "in sync"), res
    return Change(name, "update", difference.split("; ", 1)[-1]), res


async def _reconcile_from(client: AsyncOpenSearch, prefix: str) -> dt.date | None:
    """The first day a new ledger can account for whole: tomorrow when daily indices exist
    already (their alerts were stored before any ledger; today's consumers may still be the
    old ones), else every day (None)."""
    rows = await client.cat.indices(index=f"{prefix}-*", format="json", h="index")
    if not any(day_of(r["index"], prefix) for r in rows):
        return None
    return dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)


async def _plan_policy(
    client: AsyncOpenSearch, settings: OpsSettings
) -> list[tuple[Change, Resource]]:
    """The policy's line, then the prefix's indices: those without a policy, on an earlier
    version of ours (or on ours while it is about to change), on another policy."""
    res = ism.policy_resource(settings)
    name = f"{res.kind} {res.name}"
    if not await ism.installed(client):
        why = "the index-management plugin is not installed: retention is not enforced here"
        return [(Change(name, "skip", why), res)]
    held = await ism.current(client, res)
    if held is None:
        policy = (Change(name, "create", "missing"), res)
    elif changed := ism.drift(res, held):
        policy = (Change(name, "update", _differs(changed)), ism.conditional(res, held))
    else:
        policy = (Change(name, "none", "in sync"), res)
    # After a create or an update every index on the policy runs an earlier version.
    seq_no = held.seq_no if held is not None and policy[0].action == "none" else -1
    indices = await ism.explain(client, settings.opensearch.index_prefix)
    ours = res.name
    groups = [
        ("add", "without a policy", [i for i in indices.values() if i.policy_id is None]),
        (
            "move",
            f"on an earlier version of {ours}",
            [i for i in indices.values() if i.policy_id == ours and not i.on_version(ours, seq_no)],
        ),
        (
            "keep",
            "on another policy, left as a person set it (the audit names them)",
            [i for i in indices.values() if i.policy_id not in (None, ours)],
        ),
    ]
    out = [policy]
    for action, what, group in groups:
        if group:
            names = sorted(
                f"{i.index}" + (f" ({i.policy_id})" if action == "keep" else "") for i in group
            )
            detail = f"{len(names)} {what}: " + ", ".join(names[:5])
            detail += ", ..." if len(names) > 5 else ""
            out.append((Change(f"ism_indices {ours}", action, detail), res))
    return out


async def apply(
    client: AsyncOpenSearch, changes: list[tuple[Change, Resource]], prefix: str
) -> list[ism.Refused]:
    """Apply the plan; the indices ISM refused to put on the policy."""
    managed = False
    for change, res in changes:
        if change.action in ("create", "update"):
            await client.transport.perform_request("PUT", res.path, body=res.body)
        managed = managed or (res.kind == "ism_policy" and change.action != "skip")
    if not managed:
        return []
    policy = ism.policy_resource_for(prefix, changes)
    held = await ism.current(client, policy)
    if held is None:
        return []
    return await ism.attach(client, prefix, await ism.explain(client, prefix), held.seq_no)


async def run_setup(settings: OpsSettings, plan_only: bool = False) -> int:
    k = settings.kafka
    topics = (k.topic, k.dlq_topic)
    if k.create_topics:
        await check_access(k)
    async with make_client(settings.opensearch) as client:
        changes = await plan(client, settings)
        for change, _ in changes:
            print(f"{change.action:<7} {change.resource}: {change.detail}")
        drifted = any(c.action in CHANGES for c, _ in changes)
        topic_changes = await topic_drift(k, *topics) if k.create_topics else {}
        for topic, differs in topic_changes.items():
            action = "create" if differs is None else ("update" if differs else "none")
            detail = "missing" if differs is None else _topic_detail(differs)
            print(f"{action:<7} kafka_topic {topic}: {detail}")
            drifted = drifted or action != "none"
        saved = await plan_dashboards(settings) if settings.dashboards.url else []
        for change, _ in saved:
            print(f"{change.action:<7} {change.resource}: {change.detail}")
        drifted = drifted or any(c.action in CHANGES for c, _ in saved)
        if plan_only:
            print("drift: cluster differs from git" if drifted else "no drift")
            return DRIFT_EXIT if drifted else 0
        refused = await apply(client, changes, settings.opensearch.index_prefix)
    if topic_changes:
        await ensure_topics(k, *topics)
        for topic, differs in topic_changes.items():
            if differs:
                await set_topic_configs(k, topic)
    lines, code = refusal_lines(refused)
    not_imported = await apply_dashboards(settings, saved)
    if not_imported:
        lines += not_imported
        code = REFUSED_EXIT
    for line in lines or ["applied" if drifted else "nothing to do"]:
        print(line)
    return code


async def plan_dashboards(settings: OpsSettings) -> list[tuple[Change, dict[str, Any]]]:
    """A line per saved object of dashboards/: create, update or none."""
    objects = load_objects(settings.opensearch.index_prefix, settings.resources_dir or ROOT)
    async with Dashboards(settings) as dashboards:
        held = await dashboards.current(objects)
    out = []
    for obj, current in zip(objects, held, strict=True):
        difference = object_drift(obj, current)
        action = "none" if difference is None else ("create" if current is None else "update")
        name = f"saved_object {obj['type']} {obj['id']}"
        out.append((Change(name, action, difference or "in sync"), obj))
    return out


async def apply_dashboards(
    settings: OpsSettings, saved: list[tuple[Change, dict[str, Any]]]
) -> list[str]:
    """Import every object when any differs (one file: references resolve within it); the
    objects Dashboards refused, one line each."""
    if not any(change.action in CHANGES for change, _ in saved):
        return []
    async with Dashboards(settings) as dashboards:
        answer = await dashboards.import_objects([obj for _, obj in saved])
    return import_errors(answer)


def refusal_lines(refused: list[ism.Refused]) -> tuple[list[str], int]:
    """What setup says of the indices ISM refused, and its exit code."""
    if not refused:
        return [], 0
    lines = [f"refused ism_index {r.index}: {r.reason}" for r in refused]
    lines.append(
        f"ISM refused {len(refused)} index(es), named above: they are not on the current "
        "policy. Run setup again (an index between two states takes a change once ISM has "
        "moved it, within its job interval)"
    )
    return lines, REFUSED_EXIT


def _topic_detail(differs: dict[str, str]) -> str:
    if not differs:
        return "in sync"
    return _differs([f"{key} {change}" for key, change in differs.items()])
