"""`falco-ingest audit retention`: what the cluster and the archive hold, against the rules
(searchable for ``hot_retention_days``, archived for ``archive_retention_months``), with
every violation named. Read-only; the exit code says whether anything is wrong."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson
from opensearchpy import AsyncOpenSearch, NotFoundError

from ingest.config import OpsSettings
from ingest.ops import ism
from ingest.ops.archive import (
    ArchivedDay,
    RestoredIndex,
    add_months,
    archived_days,
    day_of,
    restored_indices,
)
from ingest.sink.client import make_client

# ISM acts on its job interval and retries a failed snapshot with backoff: an index is late
# only when it is still searchable this long after the policy's hot age (retention plus
# ism.HOT_MARGIN_DAYS) ended.
GRACE_DAYS = 2
VIOLATION_EXIT = 1


@dataclass(frozen=True)
class Finding:
    kind: str
    subject: str
    detail: str


@dataclass(frozen=True)
class IndexRow:
    index: str
    day: dt.date
    age_days: int
    policy: str | None  # the ISM policy managing it; None: none (or no ISM at all)
    state: str | None  # its ISM state ("-> archive" while transitioning)
    policy_seq_no: int | None = None  # the version of the policy it runs
    failing: str | None = None  # why ISM's current step for it failed (ISM's cause)


@dataclass
class Report:
    prefix: str
    today: dt.date
    hot_retention_days: int
    archive_retention_months: int
    repository: str
    ism_installed: bool
    policy: dict[str, Any] | None  # the ISM policy in force: id, version, states
    indices: list[IndexRow]
    archive: list[ArchivedDay]
    violations: list[Finding] = field(default_factory=list)
    restored: list[RestoredIndex] = field(default_factory=list)
    restored_retention_days: int = 30

    def to_json(self) -> bytes:
        data = asdict(self)
        data["archive_span"] = self.span()
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)

    def span(self) -> dict[str, Any] | None:
        good = sorted({a.day for a in self.archive if a.state == "SUCCESS"})
        if not good:
            return None
        return {"first": good[0], "last": good[-1], "days": len(good)}

    def to_markdown(self) -> str:
        out = [
            f"# Falco alert retention: `{self.prefix}`, {self.today}",
            "",
            f"Rules: searchable for {self.hot_retention_days} days, then snapshotted into the "
            f"archive repository `{self.repository}` and deleted; archived days kept "
            f"{self.archive_retention_months} months.",
            "",
            self._policy_line(),
            "",
            f"## Violations: {len(self.violations)}",
            "",
        ]
        out += [f"- **{v.kind}** `{v.subject}`: {v.detail}" for v in self.violations] or ["none"]
        out += ["", f"## Indices: {len(self.indices)}", ""]
        out += _table(
            ["index", "day", "age (days)", "ISM policy", "ISM state", "failing"],
            [[r.index, r.day, r.age_days, r.policy, _state(r), r.failing] for r in self.indices],
        )
        out += ["", f"## Archive `{self.repository}`: {len(self.archive)} snapshots", ""]
        if span := self.span():
            out += [f"Days archived: {span['first']} .. {span['last']} ({span['days']} days).", ""]
        months = self.archive_retention_months
        out += _table(
            ["snapshot", "day", "state", "keep until"],
            [[a.snapshot, a.day, a.state, a.expires(months)] for a in self.archive],
        )
        if self.restored:
            days = self.restored_retention_days
            out += ["", f"## Restored for investigations: {len(self.restored)}", ""]
            out += _table(
                ["index", "restored on", "delete on"],
                [[r.index, r.restored_on, r.expires(days)] for r in self.restored],
            )
        return "\n".join(out) + "\n"

    def _policy_line(self) -> str:
        if not self.ism_installed:
            return "Policy in force: **none** (index-management plugin not installed)."
        if self.policy is None:
            return f"Policy in force: **none** (`{self.prefix}-retention` not found)."
        return (
            f"Policy in force: `{self.policy['id']}` version {self.policy['version']} "
            f"(states: {', '.join(self.policy['states'])})."
        )


def _state(row: IndexRow) -> str | None:
    if row.policy is not None and row.state is None:
        return "initializing"
    return row.state


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    """A Markdown table (nothing without rows); None shows as ``-``."""
    if not rows:
        return []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        lines.append("| " + " | ".join("-" if v is None else str(v) for v in row) + " |")
    return lines


def findings(
    prefix: str,
    today: dt.date,
    indices: list[IndexRow],
    archive: list[ArchivedDay],
    ism_installed: bool,
    policy: dict[str, Any] | None,
    hot_days: int,
    months: int,
) -> list[Finding]:
    """The rules, applied to what was found. Pure."""
    out: list[Finding] = []
    policy_id = ism.policy_id(prefix)
    if not ism_installed:
        out.append(
            Finding(
                "ism_missing",
                "cluster",
                "the index-management plugin is not installed: nothing deletes or archives "
                "indices by itself",
            )
        )
    elif policy is None:
        out.append(Finding("policy_missing", policy_id, "no ISM policy of that id"))
    elif policy.get("differs_from_git"):
        where = ", ".join(policy["differs_from_git"][:5])
        out.append(Finding("policy_differs", policy_id, f"not the reviewed policy in git: {where}"))
    hot_age = hot_days + ism.HOT_MARGIN_DAYS
    seq_no = policy.get("seq_no") if policy else None
    for r in indices:
        if r.age_days > hot_age + GRACE_DAYS:
            out.append(
                Finding(
                    "past_hot_retention",
                    r.index,
                    f"{r.age_days} days old, still searchable (limit {hot_age} + "
                    f"{GRACE_DAYS} days for ISM to act)",
                )
            )
        if ism_installed and r.policy != policy_id:
            out.append(Finding("no_policy", r.index, f"managed by {r.policy or 'no policy'}"))
        elif r.policy_seq_no is not None and seq_no is not None and r.policy_seq_no != seq_no:
            out.append(
                Finding(
                    "policy_outdated",
                    r.index,
                    f"runs version seq_no {r.policy_seq_no} of {policy_id}, which is at "
                    f"{seq_no} (falco-ingest setup moves it)",
                )
            )
        if r.failing is not None:
            kind = "snapshot_failing" if r.state == "archive" else "ism_failing"
            out.append(Finding(kind, r.index, f"in state {r.state}: {r.failing}"))
    live = {r.day for r in indices}
    archived = {a.day for a in archive if a.state == "SUCCESS"}
    # Every alert of day D is searchable until D + 1 + hot_days: a day archived and gone
    # before that left the hot tier early.
    for day in sorted(archived - live):
        left_after = (today - day).days
        if left_after < hot_days + 1:
            out.append(
                Finding(
                    "deleted_early",
                    f"{prefix}-{day:%Y.%m.%d}",
                    f"not searchable {left_after} days after its day: its alerts are to be "
                    f"searchable for {hot_days} days",
                )
            )
    for a in archive:
        if a.expires(months) <= today:
            out.append(
                Finding(
                    "archive_past_retention",
                    a.snapshot,
                    f"holds {a.day}, to be deleted on {a.expires(months)} "
                    "(falco-ingest archive prune)",
                )
            )
    for day in sorted({a.day for a in archive} - archived - live):
        out.append(
            Finding(
                "archive_incomplete",
                f"{prefix}-{day:%Y.%m.%d}",
                "no successful snapshot of this day and no live index",
            )
        )
    # Falco reports every day on every host (at least its drop counters), so a day between
    # the oldest one kept and yesterday with neither an index nor an archived copy was
    # deleted without an archive (or nothing reported that day).
    known = live | archived
    if known:
        first = max(min(known), add_months(today, -months) + dt.timedelta(days=1))
        day, missing = first, []
        while day < today:
            if day not in known:
                missing.append(day)
            day += dt.timedelta(days=1)
        for start, end in _runs(missing):
            span = f"{start}" if start == end else f"{start} .. {end}"
            n = (end - start).days + 1
            out.append(
                Finding(
                    "day_missing",
                    span,
                    f"{n} day(s) with neither a live index nor an archive snapshot",
                )
            )
    return out


def restored_findings(restored: list[RestoredIndex], today: dt.date, days: int) -> list[Finding]:
    """Investigation copies kept past their time (`archive prune` runs daily). Pure."""
    out = []
    for r in restored:
        end = r.expires(days)
        if end is not None and (today - end).days > GRACE_DAYS:
            out.append(
                Finding(
                    "restored_past_retention",
                    r.index,
                    f"restored on {r.restored_on}, to be deleted on {end} (archive prune)",
                )
            )
    return out


def _runs(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    runs: list[tuple[dt.date, dt.date]] = []
    for d in days:
        if runs and d - runs[-1][1] == dt.timedelta(days=1):
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


async def _indices(client: AsyncOpenSearch, prefix: str, today: dt.date) -> list[IndexRow]:
    rows = await client.cat.indices(index=f"{prefix}-*", format="json", h="index")
    out = []
    for row in rows:
        day = day_of(row["index"], prefix)
        if day is not None:
            out.append(IndexRow(row["index"], day, (today - day).days, None, None))
    return sorted(out, key=lambda r: r.day)


async def _ism(
    client: AsyncOpenSearch, settings: OpsSettings, indices: list[IndexRow]
) -> tuple[bool, dict[str, Any] | None, list[IndexRow]]:
    """(ISM installed?, the policy in force, the indices with their ISM policy and state)."""
    if not await ism.installed(client):
        return False, None, indices
    res = ism.policy_resource(settings)
    held = await ism.current(client, res)
    policy = None
    if held is not None:
        policy = {
            "id": res.name,
            "version": held.version,
            "states": [s.get("name") for s in held.body["policy"].get("states", [])],
            "seq_no": held.seq_no,
            "differs_from_git": ism.drift(res, held),
        }
    prefix = settings.opensearch.index_prefix
    explained = await ism.explain(client, prefix)
    rows = []
    for r in indices:
        e = explained.get(r.index)
        if e is None:
            rows.append(r)
            continue
        rows.append(
            IndexRow(r.index, r.day, r.age_days, e.policy_id, e.state, e.policy_seq_no, e.failing)
        )
    return True, policy, rows


async def build_report(client: AsyncOpenSearch, settings: OpsSettings, today: dt.date) -> Report:
    prefix = settings.opensearch.index_prefix
    indices = await _indices(client, prefix, today)
    installed, policy, indices = await _ism(client, settings, indices)
    repository_found = True
    try:
        archive = await archived_days(client, settings.archive_repository, prefix)
    except NotFoundError:
        archive, repository_found = [], False
    restored = await restored_indices(client, prefix)
    report = Report(
        prefix,
        today,
        settings.hot_retention_days,
        settings.archive_retention_months,
        settings.archive_repository,
        installed,
        policy,
        indices,
        archive,
        restored=restored,
        restored_retention_days=settings.restored_retention_days,
    )
    report.violations = findings(
        prefix,
        today,
        indices,
        archive,
        installed,
        policy,
        settings.hot_retention_days,
        settings.archive_retention_months,
    ) + restored_findings(restored, today, settings.restored_retention_days)
    if not repository_found:
        report.violations.insert(
            0,
            Finding(
                "repository_missing",
                settings.archive_repository,
                "no such snapshot repository: nothing can be archived (falco-ingest setup)",
            ),
        )
    return report


async def run_audit(settings: OpsSettings, fmt: str, today: dt.date | None = None) -> int:
    today = today or dt.datetime.now(dt.UTC).date()
    async with make_client(settings.opensearch) as client:
        report = await build_report(client, settings, today)
    if fmt == "json":
        print(report.to_json().decode(), end="")
    else:
        print(report.to_markdown(), end="")
    return VIOLATION_EXIT if report.violations else 0
