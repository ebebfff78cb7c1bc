"""Every journey test beside the examples (``journeys/*.test.toml``) passes:
this is how ``make test`` runs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.journey_tests import format_report, load_test_file, run_test_file

from .support import JOURNEYS

TEST_FILES = sorted(JOURNEYS.glob("*.test.toml"))


@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name.removesuffix(".test.toml"))
async def test_example_journey_tests_pass(sim_env, path: Path) -> None:
    report = await run_test_file(load_test_file(path), sim_env)
    assert report.error is None, report.error
    assert report.cases, "no cases ran"
    assert report.passed, format_report(report)


def test_examples_have_journey_tests() -> None:
    """At least the first-order, the lifecycle split and the app-referral
    (wait for event) journeys, each beside its journey."""
    names = {p.name.removesuffix(".test.toml") for p in TEST_FILES}
    assert {"01_new_user_first_order", "02_group_content_app_referral", "03_lifecycle_stages"} <= names
    for path in TEST_FILES:
        assert (JOURNEYS / (path.name.removesuffix(".test.toml") + ".journey")).exists()
