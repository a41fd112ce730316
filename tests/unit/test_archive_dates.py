"""Archive retention arithmetic: 30 months from the day an index holds."""

import datetime as dt

from ingest.ops.archive import add_months, archived_days, day_of


def test_thirty_months_from_a_day():
    assert add_months(dt.date(2024, 8, 31), 30) == dt.date(2027, 2, 28)
    assert add_months(dt.date(2024, 1, 15), 30) == dt.date(2026, 7, 15)


class FakeSnapshots:
    def __init__(self, names):
        self.names = names

    async def get(self, repository, snapshot):
        snaps = []
        for name in self.names:
            name, _, index = name.partition(" holds ")
            snaps.append({"snapshot": name, "indices": [index or name], "state": "SUCCESS"})
        return {"snapshots": snaps}


class FakeClient:
    def __init__(self, names):
        self.snapshot = FakeSnapshots(names)


async def test_only_real_days_of_the_prefix_are_archived_days():
    names = ["falco-2026.11.20", "falco-2026.02.30", "other-2026.11.20", "falco-2026.11.19"]
    days = await archived_days(FakeClient(names), "falco-archive", "falco")
    assert [(a.snapshot, a.day) for a in days] == [
        ("falco-2026.11.19", dt.date(2026, 11, 19)),
        ("falco-2026.11.20", dt.date(2026, 11, 20)),
    ]


async def test_snapshots_named_by_ism_with_their_time_are_ours():
    names = [
        "falco-2026.11.20-2027.11.21-00:05:01.123 holds falco-2026.11.20",  # ISM's name
        "falco-2026.11.20-2027.11.21-01:05:01.456 holds falco-2026.11.20",  # its retry
        "falco-2026.11.19 holds falco-2026.11.19",  # taken by hand
        "falco-2026.11.18-2027.11.19-00:05:01.123 holds falco-2026.11.17",  # another index
        "falco-2026.11.18-latest holds falco-2026.11.18",  # not a name ISM gives
    ]
    days = await archived_days(FakeClient(names), "falco-archive", "falco")
    assert [(a.snapshot[:30], a.day) for a in days] == [
        ("falco-2026.11.19", dt.date(2026, 11, 19)),
        ("falco-2026.11.20-2027.11.21-00", dt.date(2026, 11, 20)),
        ("falco-2026.11.20-2027.11.21-01", dt.date(2026, 11, 20)),
    ]


def test_day_of_a_daily_index_name():
    assert day_of("falco-2026.11.20", "falco") == dt.date(2026, 11, 20)
    assert day_of("falco-dev-2026.11.20", "falco-dev") == dt.date(2026, 11, 20)
    for name in (
        "falco-2026.02.30",
        "falco-2026.11.2",
        "falco-dev-2026.11.20",
        "restored-falco-2026.11.20",
        "falco-2026-11-20",
    ):
        assert day_of(name, "falco") is None, name
