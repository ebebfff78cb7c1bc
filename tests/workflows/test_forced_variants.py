"""``JourneyInput.forced_variants`` on the interpreter: a forced split takes
its variant every time (holdout included) and says so in its record; a name
the split does not have draws as usual instead of failing the run; nothing
forced draws as before (the replay tests hold the old histories to that)."""

from __future__ import annotations

from runtime.worker import build_worker
from tests.workflows.fakes import FakeEngine
from tests.workflows.support import TQ, journey, start

SPLIT = """
    journey "split"
      split:
        50% A: send sms "a"
        50% holdout
      send wecom "all"
    """


async def test_a_forced_variant_is_taken_by_every_run(ts_env) -> None:
    engine = FakeEngine()
    ir = journey(SPLIT)
    split = ir.steps[0].id
    async with build_worker(ts_env.client, engine.all(), TQ):
        for i in range(8):
            handle = await start(ts_env, ir, user=f"h{i}", forced_variants={split: "holdout"})
            assert await handle.result() == "completed"
    records = [r for r in engine.records if r.node_id == split]
    assert [(r.outcome, r.detail) for r in records] == [("variant:holdout", {"forced": True})] * 8
    assert {s.template for s in engine.sends} == {"all"}
    assert all(s.holdout and s.variant == "holdout" for s in engine.sends)


async def test_an_unknown_forced_name_draws_instead_of_failing(ts_env) -> None:
    engine = FakeEngine()
    ir = journey(SPLIT)
    split = ir.steps[0].id
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir, user="x1", forced_variants={split: "C", "split-other": "A"})
        assert await handle.result() == "completed"
    (record,) = [r for r in engine.records if r.node_id == split]
    assert record.outcome in ("variant:A", "variant:holdout")
    assert "forced" not in record.detail
