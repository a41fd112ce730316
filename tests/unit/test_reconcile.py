"""The days reconciled with the ledger (pure code) and the report that can be filed."""

from __future__ import annotations

import datetime as dt
import random

import orjson

from ingest.ops.archive import ArchivedDay
from ingest.ops.audit import DAY_COLUMNS, Finding, Report, findings, verify
from ingest.ops.reconcile import Ledger, LedgerDay, RestoreCheck, as_rows, choose_days
from ingest.ops.reconcile import ledger_findings as reconcile

TODAY = dt.date(2026, 11, 26)
HOT = 10


def day(n: int) -> dt.date:
    return TODAY - dt.timedelta(days=n)


def name(n: int) -> str:
    return f"falco-{day(n):%Y.%m.%d}"


def snap(n: int, state: str = "SUCCESS") -> ArchivedDay:
    return ArchivedDay(f"{name(n)}-2026.01.01-00:00:00.000", day(n), state)


def ledger(stored: dict[int, int], since: dt.date | None = None) -> Ledger:
    return Ledger("ledger-falco", since, {day(n): LedgerDay(s) for n, s in stored.items()})


def test_each_kind_of_unaccounted_day_is_named_and_a_quiet_day_is_not():
    book = ledger({1: 50, 2: 40, 3: 30, 5: 20, 14: 10, 15: 12, 16: 7})
    counts = {name(1): 50, name(2): 38, name(3): 31, name(16): 7}  # 4: quiet, no index
    archive = [snap(14), snap(16), snap(15, "FAILED")]
    got = reconcile("falco", TODAY, book, counts, archive, HOT, day(20))
    assert [(k, s) for k, s, _ in got] == [
        ("archive_missing", name(15)),  # past hot, its only snapshot failed
        ("deleted_early", name(5)),  # gone 5 days after its day, hot for 10
        ("count_mismatch", name(3)),  # one more than stored
        ("count_mismatch", name(2)),  # two fewer
    ]
    details = {s: d for _, s, d in got}
    assert "holds 38 documents; the ledger says 40" in details[name(2)]
    assert "fewer" in details[name(2)] and "more" in details[name(3)]


def test_an_index_the_ledger_knows_nothing_of_is_a_mismatch_when_it_holds_alerts():
    got = reconcile("falco", TODAY, ledger({}), {name(2): 3, name(3): 0}, [], HOT, day(5))
    assert [(k, s) for k, s, _ in got] == [("count_mismatch", name(2))]


def test_days_before_the_ledgers_first_day_are_left_to_the_older_rules():
    # A day with neither index nor snapshot: day_missing before the ledger, and after it
    # nothing (the ledger judges it; here it had no alerts: a quiet day)
    live = [name(n) for n in range(0, 4)]
    from ingest.ops.audit import IndexRow

    rows = [IndexRow(i, day(n), n, None, None) for n, i in enumerate(live)]
    rows += [IndexRow(name(6), day(6), 6, None, None)]
    old = findings("falco", TODAY, rows, [], False, None, HOT, 30)
    assert ("day_missing", f"{day(5)} .. {day(4)}") in [(f.kind, f.subject) for f in old]
    judged = findings("falco", TODAY, rows, [], False, None, HOT, 30, reconciled_from=day(6))
    assert "day_missing" not in [f.kind for f in judged]


def test_restore_tests_take_the_oldest_and_newest_then_others_at_random():
    archive = [snap(n) for n in range(30, 10, -1)] + [snap(12, "FAILED"), snap(25)]
    chosen = choose_days(archive, 2, random.Random(1))
    assert [a.day for a in chosen] == [day(30), day(11)]
    more = choose_days(archive, 5, random.Random(1))
    assert len(more) == 5 and more[0].day == day(30) and more[-1].day == day(11)
    assert len({a.day for a in more}) == 5
    assert choose_days(archive, 0, random.Random(1)) == []
    assert len(choose_days(archive, 100, random.Random(1))) == 20


def report() -> Report:
    book = ledger({1: 5, 2: 0, 3: 4})
    r = Report("falco", TODAY, HOT, 30, "falco-archive", False, None, [], [snap(3)])
    r.ledger_present, r.ledger, r.documents = True, as_rows(book), {name(1): 5, name(0): 2}
    r.violations = [Finding("deleted_early", name(3), "gone")]
    r.restore_checks = [RestoreCheck(day(3), snap(3).snapshot, 4, 4, "ok", "4 read back", 1.5)]
    r.inputs = {"cluster_name": "c", "cluster_uuid": "u", "resources": {"ilm/x.json": "ab"}}
    return r


def test_the_report_ends_with_the_sha256_of_its_body_and_a_changed_copy_fails():
    r = report()
    text = r.to_json().decode()
    data = orjson.loads(text)
    assert text.rstrip().endswith(f'"sha256": "{r.digest()}"\n}}'.rstrip())
    assert data["sha256"] == r.digest()
    assert verify(text) == (True, f"unchanged: sha256 {r.digest()}")
    assert data["inputs"]["cluster_uuid"] == "u"
    tampered = text.replace('"stored": 5', '"stored": 6')
    assert tampered != text
    ok, said = verify(tampered)
    assert not ok and "changed since it was made" in said
    assert verify("{}")[0] is False
    for other in (b"\xff\xfe not utf-8", b"[1, 2]", b"42", b'{"sha256": 1}', b""):
        assert verify(other)[0] is False, other


def test_the_csv_has_a_row_a_day_and_the_markdown_the_same_digest():
    r = report()
    lines = r.to_csv().splitlines()
    assert lines[0] == ",".join(DAY_COLUMNS)
    assert lines[-1] == f"# sha256 of the JSON body: {r.digest()}"
    rows = lines[1:-1]
    assert len(rows) == 4  # day 3 .. today
    assert rows[0].startswith(f"{day(3)},4,0,,{snap(3).snapshot},deleted_early")
    assert rows[1] == f"{day(2)},0,0,,,"  # a quiet day: stored 0, nothing to hold
    assert rows[2] == f"{day(1)},5,0,5,,"
    md = r.to_markdown()
    assert md.rstrip().endswith(f"sha256 of the JSON body: `{r.digest()}`")
    assert "## Restore tests: 1" in md and "| ok |" in md
    assert "- cluster_uuid: u" in md and "`ilm/x.json` sha256 ab" in md
