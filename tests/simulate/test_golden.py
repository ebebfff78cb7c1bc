"""``journeys simulate`` output for two examples, against committed goldens
(regenerate with ``UPDATE_GOLDEN=1`` after an intended change and review
the diff). The cases are those of the examples' test files; the start
(the next Monday 09:00 of the test server's clock) is the one line that
moves with the calendar, so it is replaced by ``START``."""

from __future__ import annotations

from pathlib import Path

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


def test_a_missing_or_different_golden_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    golden = tmp_path / "x.txt"
    for value in (None, "0", "", "true"):
        if value is None:
            monkeypatch.delenv("UPDATE_GOLDEN", raising=False)
        else:
            monkeypatch.setenv("UPDATE_GOLDEN", value)
        with pytest.raises(AssertionError, match="missing"):
            assert_golden(golden, "a\n")
        assert not golden.exists()
        golden.write_text("b\n", encoding="utf-8")
        with pytest.raises(AssertionError, match="differs"):
            assert_golden(golden, "a\n")
        assert golden.read_text(encoding="utf-8") == "b\n"
        golden.unlink()
