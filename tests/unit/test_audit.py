"""The retention rules of `audit retention`, applied to made-up clusters (pure code)."""

import datetime as dt

import orjson

from ingest.ops.archive import ArchivedDay, RestoredIndex
from ingest.ops.audit import GRACE_DAYS, IndexRow, Report, findings, restored_findings
from ingest.ops.ism import HOT_MARGIN_DAYS

TODAY = dt.date(2026, 11, 26)
POLICY = {"id": "falco-retention", "version": 3, "states": ["hot", "archive", "delete"]}


def index(day: dt.date, policy: str | None = "falco-retention") -> IndexRow:
    return IndexRow(f"falco-{day:%Y.%m.%d}", day, (TODAY - day).days, policy, "hot")


def snapshot(day: dt.date, state: str = "SUCCESS") -> ArchivedDay:
    return ArchivedDay(f"falco-{day:%Y.%m.%d}-2026.01.01-00:00:00.000", day, state)


def days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(n) for n in range((last - first).days + 1)]


def check(indices, archive, ism=True, policy=POLICY):
    return findings("falco", TODAY, indices, archive, ism, policy, 365, 30)


def clean_cluster():
    """Hot days in the cluster, older ones in the archive, nothing past either limit."""
    hot_from = TODAY - dt.timedelta(days=365)
    indices = [index(d) for d in days(hot_from, TODAY)]
    # 30 months before 2026-11-26 is 2024-05-26: the archive keeps the days after it
    archive = [snapshot(d) for d in days(dt.date(2024, 5, 27), hot_from - dt.timedelta(1))]
    return indices, archive


def test_a_clean_cluster_has_no_violation():
    assert check(*clean_cluster()) == []


def test_each_planted_violation_is_named_once():
    indices, archive = clean_cluster()
    late = TODAY - dt.timedelta(days=365 + HOT_MARGIN_DAYS + GRACE_DAYS + 1)
    indices.append(index(late))  # hot retention over, still searchable
    indices[-2] = index(indices[-2].day, policy=None)  # not managed by ISM
    gone = dt.date(2025, 3, 3)
    archive = [a for a in archive if a.day != gone]  # deleted without an archive copy
    archive.append(snapshot(dt.date(2024, 1, 5)))  # past 30 months
    failed = dt.date(2025, 4, 4)
    archive = [snapshot(failed, "FAILED") if a.day == failed else a for a in archive]
    got = {(f.kind, f.subject) for f in check(indices, archive)}
    assert got == {
        ("past_hot_retention", f"falco-{late:%Y.%m.%d}"),
        ("no_policy", indices[-2].index),
        ("day_missing", "2025-03-03"),
        ("archive_past_retention", "falco-2024.01.05-2026.01.01-00:00:00.000"),
        ("archive_incomplete", "falco-2025.04.04"),
        ("day_missing", "2025-04-04"),
    }


def test_within_the_grace_period_an_old_index_is_not_yet_a_violation():
    indices, archive = clean_cluster()
    indices.append(index(TODAY - dt.timedelta(days=365 + HOT_MARGIN_DAYS + GRACE_DAYS)))
    assert check(indices, archive) == []


def test_missing_days_are_reported_as_runs():
    indices, archive = clean_cluster()
    gap = set(days(dt.date(2026, 2, 1), dt.date(2026, 2, 10)))
    indices = [r for r in indices if r.day not in gap]
    got = [(f.kind, f.subject, f.detail[:6]) for f in check(indices, archive)]
    assert got == [("day_missing", "2026-02-01 .. 2026-02-10", "10 day")]


def test_without_ism_or_without_the_policy():
    indices, archive = clean_cluster()
    assert [f.kind for f in check(indices, archive, ism=False, policy=None)] == ["ism_missing"]
    assert [f.kind for f in check(indices, archive, policy=None)] == ["policy_missing"]
    edited = dict(POLICY, differs_from_git=["policy.states[0].transitions"])
    assert [f.kind for f in check(indices, archive, policy=edited)] == ["policy_differs"]


def test_report_renders_both_formats():
    indices, archive = clean_cluster()
    report = Report("falco", TODAY, 365, 30, "falco-archive", True, POLICY, indices, archive)
    report.violations = check(indices, [])
    data = orjson.loads(report.to_json())
    assert data["archive_span"] == {"first": "2024-05-27", "last": "2025-11-25", "days": 548}
    assert len(data["indices"]) == 366 and data["policy"]["version"] == 3
    text = report.to_markdown()
    assert "`falco-retention` version 3" in text
    assert "| falco-2026.11.26 | 2026-11-26 | 0 | falco-retention | hot | - |" in text
    assert f"## Violations: {len(report.violations)}" in text


def test_restored_copies_kept_past_their_days_are_flagged():
    old = RestoredIndex("restored-falco-2025.01.01", TODAY - dt.timedelta(days=30 + GRACE_DAYS + 1))
    recent = RestoredIndex("restored-falco-2025.01.02", TODAY - dt.timedelta(days=30 + GRACE_DAYS))
    by_hand = RestoredIndex("restored-falco-2025.01.03", None)
    got = restored_findings([old, recent, by_hand], TODAY, 30)
    assert [(f.kind, f.subject) for f in got] == [("restored_past_retention", old.index)]


def test_a_day_gone_from_the_hot_tier_before_its_year_is_deleted_early():
    """Every alert of day D is to be searchable until D + 1 + 365: a day archived and gone
    before that left the hot tier early, even with its snapshot there."""
    indices, archive = clean_cluster()
    early = TODAY - dt.timedelta(days=200)
    indices = [r for r in indices if r.day != early]
    archive.append(snapshot(early))
    got = [(f.kind, f.subject) for f in check(indices, archive)]
    assert got == [("deleted_early", f"falco-{early:%Y.%m.%d}")]
    # the day before the clean cluster's oldest index has had its year: not early
    oldest = min(r.day for r in indices)
    assert (TODAY - (oldest - dt.timedelta(days=1))).days == 365 + 1
