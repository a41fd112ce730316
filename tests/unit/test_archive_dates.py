"""Archive retention arithmetic: 30 months from the day an index holds."""

import datetime as dt

from ingest.ops.archive import add_months, archived_days


def test_thirty_months_from_a_day():
    assert add_months(dt.date(2024, 8, 31), 30) == dt.date(2027, 2, 28)
    assert add_months(dt.date(2024, 1, 15), 30) == dt.date(2026, 7, 15)


class FakeSnapshots:
    def __init__(self, names):
        self.names = names

    async def get(self, repository, snapshot):
        return {
            "snapshots": [{"snapshot": n, "indices": [n], "state": "SUCCESS"} for n in self.names]
        }


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
