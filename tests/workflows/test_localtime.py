"""Reading dates and date-times for ``wait until user.x`` / ``event.x``."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from workflows.localtime import moment_from

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    ("value", "at", "expected"),
    [
        ("2026-09-01", None, datetime(2026, 9, 1, 0, 0, tzinfo=SHANGHAI)),  # bare date: local midnight
        ("2026-09-01", "10:30", datetime(2026, 9, 1, 10, 30, tzinfo=SHANGHAI)),
        ("2026-09-01T10:00:00", None, datetime(2026, 9, 1, 10, 0, tzinfo=SHANGHAI)),  # naive: local
        ("2026-09-01T10:00:00Z", None, datetime(2026, 9, 1, 10, 0, tzinfo=UTC)),
        ("2026-09-01T10:00:00+09:00", None, datetime(2026, 9, 1, 1, 0, tzinfo=UTC)),
        # ``at`` moves a date-time to that time of its local day (09-01 22:00 UTC is 09-02 in Shanghai)
        ("2026-09-01T22:00:00Z", "08:00", datetime(2026, 9, 2, 8, 0, tzinfo=SHANGHAI)),
        (" 2026-09-01 ", None, datetime(2026, 9, 1, 0, 0, tzinfo=SHANGHAI)),
    ],
)
def test_dates_and_date_times(value: str, at: str | None, expected: datetime) -> None:
    moment = moment_from(value, SHANGHAI, at)
    assert moment == expected and moment.tzinfo == UTC


@pytest.mark.parametrize("value", [None, "", "someday", "2026-13-01", "2026-02-30T10:00:00", 1788000000, True])
def test_what_is_not_a_date(value: object) -> None:
    assert moment_from(value, SHANGHAI, None) is None
