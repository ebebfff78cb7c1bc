"""``journeys simulate`` output for two examples, against committed goldens
(regenerate with ``UPDATE_GOLDEN=1`` after an intended change and review
the diff). The cases are those of the examples' test files; the start
(the next Monday 09:00 of the test server's clock) is the one line that
moves with the calendar, so it is replaced by ``START``."""

from __future__ import annotations

import pytest

from runtime.journey_tests import load_test_file
from runtime.simulate import simulate
from runtime.simulate_text import format_result

from .support import GOLDEN, JOURNEYS, assert_golden

EXAMPLES = ["01_new_user_first_order", "02_group_content_app_referral"]


@pytest.mark.parametrize("name", EXAMPLES)
async def test_simulate_output_golden(sim_env, name: str) -> None:
    test = load_test_file(JOURNEYS / f"{name}.test.toml")
    result = await simulate(test.source, [c.case for c in test.cases], world=test.world, env=sim_env, name=name)
    text = format_result(result).replace(result.start.isoformat(), "START")
    assert_golden(GOLDEN / f"{name}.txt", text)
