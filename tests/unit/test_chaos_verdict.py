"""The chaos run's verdict (bench/chaos_watch.verdict) finds what a run got wrong: the
count it exits on must be able to fail."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from chaos_watch import verdict  # noqa: E402


def test_a_clean_run_has_no_failure():
    counts, failures = verdict(["a", "b", "c"], ["c", "a", "b"], [])
    assert failures == []
    assert counts == {"stored": 3, "duplicates": 0, "dead_lettered": 0, "lost": 0, "unknown_ids": 0}


def test_lost_twice_strangers_and_dead_letters_are_each_named():
    sent = ["a", "b", "c", "d"]
    counts, failures = verdict(sent, ["a", "b", "b", "e"], ["not_an_object: b'[]'"])
    assert counts == {"stored": 4, "duplicates": 1, "dead_lettered": 1, "lost": 2, "unknown_ids": 1}
    assert failures[0] == "2 alerts lost, e.g. #2 (file, id c), #3 (http, id d)"
    assert failures[1] == "1 ids stored more than once, e.g. ['b']"
    assert failures[2] == "1 documents that are none of the alerts sent"
    assert failures[3].startswith("1 valid alerts dead-lettered")
