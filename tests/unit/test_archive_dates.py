"""Archive retention arithmetic: 30 months from the day an index holds."""

import datetime as dt

from ingest.ops.archive import add_months


def test_thirty_months_from_a_day():
    assert add_months(dt.date(2024, 8, 31), 30) == dt.date(2027, 2, 28)
    assert add_months(dt.date(2024, 1, 15), 30) == dt.date(2026, 7, 15)
