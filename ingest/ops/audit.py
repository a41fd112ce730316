"""`falco-ingest audit retention`: what the cluster and the archive hold, against the rules
(searchable for ``hot_retention_days``, archived for ``archive_retention_months``), with
every violation named. Read-only; the exit code says whether anything is wrong."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import hashlib
import io
import logging
import random
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
from ingest.ops.reconcile import (
    RestoreCheck,
    as_rows,
    choose_days,
    index_counts,
    ledger_findings,
    read_ledger,
    verify_archive,
    verify_findings,
)
from ingest.ops.report_store import save_report
from ingest.ops.resources import ROOT
from ingest.sink.client import make_client
from ingest.sink.ledger import ledger_index

log = logging.getLogger(__name__)
# ISM acts on its job interval and retries a failed snapshot with backoff: an index is late
# only when it is still searchable this long after the policy's hot age (retention plus
# ism.HOT_MARGIN_DAYS) ended.
GRACE_DAYS = 2
VIOLATION_EXIT = 1
DAY_COLUMNS = (
    "day",
    "ledger_stored",
    "dead_lettered",
    "index_documents",
    "archived_snapshot",
    "findings",
)


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
    # what the report was made from: cluster, time, the resource files' sha256
    inputs: dict[str, Any] = field(default_factory=dict)
    ledger_present: bool = False
    ledger_since: dt.date | None = None
    ledger: list[dict[str, Any]] = field(default_factory=list)  # reconcile.as_rows
    documents: dict[str, int] = field(default_factory=dict)  # daily index -> documents
    restore_checks: list[RestoreCheck] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        """The report's data: what its JSON holds and its sha256 is taken of."""
        data = asdict(self)
        data["archive_span"] = self.span()
        data["days"] = self.day_rows()
        return data

    def digest(self) -> str:
        """sha256 of the JSON body, keys sorted, no white space (`audit verify` checks it)."""
        return hashlib.sha256(orjson.dumps(self.body(), option=orjson.OPT_SORT_KEYS)).hexdigest()

    def to_json(self) -> bytes:
        """The body, indented, its keys sorted, and last its ``sha256``."""
        text = orjson.dumps(self.body(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        return text[:-2] + b',\n  "sha256": "%s"\n}\n' % self.digest().encode()

    def to_csv(self) -> str:
        """One row a day, for spreadsheets; the body's sha256 on the last line."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(DAY_COLUMNS)
        for row in self.day_rows():
            writer.writerow(["" if row[c] is None else row[c] for c in DAY_COLUMNS])
        out.write(f"# sha256 of the JSON body: {self.digest()}\n")
        return out.getvalue()

    def day_rows(self) -> list[dict[str, Any]]:
        """Every day from the oldest one anything knows of to today: what the ledger says
        was stored and dead-lettered, what the index holds, the archive's snapshot, and the
        kinds of the violations about that day."""
        ledger = {dt.date.fromisoformat(str(r["day"])): r for r in self.ledger}
        docs = {day_of(i, self.prefix): n for i, n in self.documents.items()}
        snapshots = {a.day: a.snapshot for a in self.archive if a.state == "SUCCESS"}
        known = set(ledger) | {d for d in docs if d} | set(snapshots)
        if not known:
            return []
        kinds: dict[str, list[str]] = {}
        for v in self.violations:
            kinds.setdefault(v.subject, []).append(v.kind)
        rows, day = [], min(known)
        while day <= self.today:
            entry = ledger.get(day)
            index = f"{self.prefix}-{day:%Y.%m.%d}"
            rows.append(
                {
                    "day": day,
                    "ledger_stored": entry["stored"]
                    if entry
                    else (0 if self._reconciled(day) else None),
                    "dead_lettered": sum(entry["dead_lettered"].values()) if entry else 0,
                    "index_documents": docs.get(day),
                    "archived_snapshot": snapshots.get(day),
                    "findings": " ".join(kinds.get(index, [])),
                }
            )
            day += dt.timedelta(days=1)
        return rows

    def _reconciled(self, day: dt.date) -> bool:
        return self.ledger_present and (self.ledger_since is None or day >= self.ledger_since)

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
        out += ["", "## Reconciliation with the consumers' ledger", ""]
        if not self.ledger_present:
            out += [f"No ledger index (`ledger-{self.prefix}`): days are not reconciled."]
        else:
            since = f"from {self.ledger_since} on" if self.ledger_since else "every day"
            out += [
                f"Ledger `ledger-{self.prefix}`, accounting for {since}: each such day's "
                "index must hold what the consumers stored; a day they stored nothing on is "
                "quiet, not missing.",
                "",
            ]
            out += _table(
                [
                    "day",
                    "stored (ledger)",
                    "dead-lettered",
                    "index documents",
                    "archived",
                    "findings",
                ],
                [
                    [
                        r["day"],
                        r["ledger_stored"],
                        r["dead_lettered"],
                        r["index_documents"],
                        r["archived_snapshot"],
                        r["findings"] or None,
                    ]
                    for r in self.day_rows()
                ],
            )
        if self.restore_checks:
            out += ["", f"## Restore tests: {len(self.restore_checks)}", ""]
            out += _table(
                ["day", "snapshot", "read back", "stored (ledger)", "result", "seconds"],
                [
                    [c.day, c.snapshot, c.restored_docs, c.ledger_stored, c.result, c.seconds]
                    for c in self.restore_checks
                ],
            )
        if self.restored:
            days = self.restored_retention_days
            out += ["", f"## Restored for investigations: {len(self.restored)}", ""]
            out += _table(
                ["index", "restored on", "delete on"],
                [[r.index, r.restored_on, r.expires(days)] for r in self.restored],
            )
        out += ["", "## Inputs", ""]
        out += [f"- {key}: {value}" for key, value in self.inputs.items() if key != "resources"]
        out += [
            f"- `{path}` sha256 {digest}"
            for path, digest in self.inputs.get("resources", {}).items()
        ]
        out += ["", f"sha256 of the JSON body: `{self.digest()}`"]
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
    reconciled_from: dt.date | None = None,
) -> list[Finding]:
    """The rules, applied to what was found. Days from ``reconciled_from`` on are the
    ledger's to judge (reconcile.ledger_findings): a day gone from the hot tier or missing
    is a violation there only when the ledger says it had alerts. Pure."""
    judged = reconciled_from or dt.date.max
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
    for day in sorted(d for d in archived - live if d < judged):
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
        while day < min(today, judged):
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


async def build_report(
    client: AsyncOpenSearch,
    settings: OpsSettings,
    today: dt.date,
    verify_days: int = 0,
    rng: random.Random | None = None,
) -> Report:
    prefix = settings.opensearch.index_prefix
    indices = await _indices(client, prefix, today)
    installed, policy, indices = await _ism(client, settings, indices)
    repository_found = True
    try:
        archive = await archived_days(client, settings.archive_repository, prefix)
    except NotFoundError:
        archive, repository_found = [], False
    restored = await restored_indices(client, prefix)
    ledger = await read_ledger(client, prefix)
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
        inputs=await _inputs(client, settings),
        ledger_present=ledger is not None,
        ledger_since=ledger.since if ledger else None,
        ledger=as_rows(ledger),
        documents=await index_counts(client, prefix),
    )
    window_start = add_months(today, -settings.archive_retention_months)
    reconciled_from = None
    if ledger is not None:
        reconciled_from = max(ledger.since or window_start, window_start)
    report.violations = findings(
        prefix,
        today,
        indices,
        archive,
        installed,
        policy,
        settings.hot_retention_days,
        settings.archive_retention_months,
        reconciled_from,
    ) + restored_findings(restored, today, settings.restored_retention_days)
    if ledger is None:
        report.violations.append(
            Finding(
                "ledger_missing",
                ledger_index(prefix),
                "no ledger: the days cannot be reconciled with what the consumers stored "
                "(falco-ingest setup makes it; the consumers write it)",
            )
        )
    elif reconciled_from is not None:
        report.violations += [
            Finding(*f)
            for f in ledger_findings(
                prefix,
                today,
                ledger,
                report.documents,
                archive,
                settings.hot_retention_days,
                reconciled_from,
            )
        ]
    if verify_days and repository_found:
        chosen = choose_days(archive, verify_days, rng or random.Random())
        report.restore_checks = await verify_archive(
            client, settings.archive_repository, prefix, chosen, ledger
        )
        report.violations += [Finding(*f) for f in verify_findings(report.restore_checks, prefix)]
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


async def _inputs(client: AsyncOpenSearch, settings: OpsSettings) -> dict[str, Any]:
    """What the report was made from: the cluster, when, and the reviewed files in force."""
    info = await client.info()
    root = settings.resources_dir or ROOT
    files = sorted(
        f
        for folder in ("mappings", "index_templates", "ilm", "dashboards")
        for f in (root / folder).glob("*")
        if f.suffix in (".json", ".ndjson")
    )
    return {
        "cluster_name": info.get("cluster_name"),
        "cluster_uuid": info.get("cluster_uuid"),
        "opensearch_version": info.get("version", {}).get("number"),
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "resources": {
            str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest() for f in files
        },
    }


def render(report: Report, fmt: str) -> str:
    if fmt == "json":
        return report.to_json().decode()
    if fmt == "csv":
        return report.to_csv()
    return report.to_markdown()


def verify(text: bytes | str) -> tuple[bool, str]:
    """Whether a report's JSON is as it was made: its ``sha256`` against its body's. Any
    other file (not JSON, not UTF-8, no ``sha256``) is not a report."""
    try:
        data = orjson.loads(text)
        claimed = data.pop("sha256")
    except (orjson.JSONDecodeError, KeyError, AttributeError, TypeError):
        return False, "not a report's JSON (no sha256)"
    actual = hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()
    if actual != claimed:
        return False, f"changed since it was made: sha256 {actual}, the report says {claimed}"
    return True, f"unchanged: sha256 {actual}"


async def run_audit(
    settings: OpsSettings,
    fmt: str,
    today: dt.date | None = None,
    verify_days: int = 0,
    save: str | None = None,
) -> int:
    today = today or dt.datetime.now(dt.UTC).date()
    async with make_client(settings.opensearch) as client:
        report = await build_report(client, settings, today, verify_days)
    print(render(report, fmt), end="")
    if save:
        for where in await asyncio.to_thread(save_report, report, save, settings):
            log.info("report saved", extra={"to": where})
    return VIOLATION_EXIT if report.violations else 0
