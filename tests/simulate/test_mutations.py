"""A journey test fails when its journey changes behaviour: the first-order
journey's own test file, run against edited copies of the journey."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from runtime.journey_tests import format_report, load_test_file, run_test_file

from .support import JOURNEYS

NAME = "01_new_user_first_order"


def _copy_with(tmp_path: Path, old: str, new: str) -> Path:
    source = (JOURNEYS / f"{NAME}.journey").read_text(encoding="utf-8")
    assert old in source
    (tmp_path / f"{NAME}.journey").write_text(source.replace(old, new, 1), encoding="utf-8")
    test = tmp_path / f"{NAME}.test.toml"
    shutil.copyfile(JOURNEYS / f"{NAME}.test.toml", test)
    return test


@pytest.mark.parametrize(
    ("old", "new", "failing"),
    [
        ('send wecom "welcome_coupon"', 'send wecom "welcome_coupon_v2"', "sends wecom welcome_coupon within 1m"),
        ("  wait 1d\n", "  wait 2d\n", "sends wecom general_coupon_reminder within 1d1m"),
        ("up to 7d", "up to 1h", "takes on event at wait-event-order_paid"),
        ('send best of push, wecom, sms "second_order_coupon"', 'send sms "second_order_coupon"', "no sms"),
    ],
    ids=["template renamed", "longer wait", "shorter timeout", "sms instead of best of"],
)
async def test_a_changed_journey_fails_its_test(sim_env, tmp_path: Path, old: str, new: str, failing: str) -> None:
    report = await run_test_file(load_test_file(_copy_with(tmp_path, old, new)), sim_env)
    assert report.error is None, report.error
    assert not report.passed
    failed = {text for case in report.cases for text, _ in case.failures}
    assert failing in failed, format_report(report)
    shown = format_report(report)
    assert f"  expected: {failing}" in shown and "  actual timeline:" in shown and "FAIL" in shown


async def test_the_unchanged_copy_passes(sim_env, tmp_path: Path) -> None:
    """The mutations above fail because of the edit, not the copying."""
    report = await run_test_file(load_test_file(_copy_with(tmp_path, "wait 1d", "wait 1d")), sim_env)
    assert report.passed, format_report(report)
