"""``split test`` end to end on the time-skipping server with the real
engine: journey text, 40 sign-ups at once, the buyers among those who got
copy A, then the window's end — the held runs (and a later sign-up) take A;
with no buyers the fallback. Decided once for the version, with the numbers
it was based on."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_asyncio

from engine import split_tests
from tests.integration.live_world import World, time_skipping

JOURNEY = """\
journey "copy test"
  entry event signed_up
  goal event order_paid within 1d
  split test 50% for 6h by goal:
    50% A: send sms "copy_a"
    50% B: send sms "copy_b"
    otherwise: B
"""
USERS = 40


@pytest_asyncio.fixture
async def ts_env():
    env = await time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.mark.parametrize("buyers_of", ["copy_a", None])
async def test_the_rest_get_the_better_copy_or_the_fallback(ts_env, tmp_path: Path, buyers_of: str | None) -> None:
    world = World.make(ts_env, tmp_path, f"tq-split-{buyers_of}", "copy_a", "copy_b")
    world.settings = world.settings.model_copy(update={"split_test_min_per_variant": 2})
    world.deploy("copy", JOURNEY)
    phones = [f"1380000{4000 + i}" for i in range(USERS)]
    async with world.worker():
        users = [(await world.track(f"s{i}", "signed_up", [("phone", p)])).user_id for i, p in enumerate(phones)]
        # the test runs send at once; the others wait at the split for 6h
        for _ in range(400):
            sent = [d for d in world.sent("copy") if d.status == "sent"]
            held = [s for s in world.steps("copy") if s.outcome == "held"]
            if len(sent) + len(held) == USERS:
                break
            await asyncio.sleep(0.05)
        tested = {d.user_id: d.template for d in world.sent("copy")}
        assert tested and len(tested) < USERS, "some runs are the test, the rest are held"
        by_user = dict(zip(users, phones, strict=True))
        for uid, template in tested.items():
            if template == buyers_of:
                await world.track(f"o-{uid}", "order_paid", [("phone", by_user[uid])])
        for uid in users:
            assert await world.result("copy", uid) == "completed"
        late = (await world.track("late", "signed_up", [("phone", "13800009999")])).user_id
        assert late is not None and await world.result("copy", late) == "completed"

    decision = split_tests.get(world.store, "copy", 1, "split-A-B")
    assert decision is not None and decision.decided_by == "test"
    expected = "A" if buyers_of else "B"
    assert decision.winner == expected, decision.reason
    rest = {d.user_id: d.template for d in world.sent("copy") if d.user_id not in tested}
    assert set(rest.values()) == {f"copy_{expected.lower()}"}
    assert late in rest
    counted = decision.numbers["variants"]  # type: ignore[index]
    assert sum(v["runs"] for v in counted.values()) == len(tested)
    if buyers_of:
        assert counted["A"]["hits"] == counted["A"]["runs"] and counted["B"]["hits"] == 0
