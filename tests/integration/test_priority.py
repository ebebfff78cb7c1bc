"""Scenario 16 (core users touched first for a big promotion) on the
time-skipping server with the real engine: with a cap of one message a day,
a core user in both the core-user journey and the general promotion gets
the core message, and an ordinary user gets the promotion. Journey text plus
one scripted event that enters both journeys at once."""

from __future__ import annotations

from pathlib import Path

from engine.tags import change_tags
from tests.integration.live_world import World, time_skipping

CORE = """\
journey "core users first"
  entry event big_sale
  priority 1
  if tag core:
    send sms "core_offer"
"""

PROMO = """\
journey "general promotion"
  entry event big_sale
  send sms "promo"
"""


async def test_the_core_user_gets_the_core_message_and_the_ordinary_user_the_promotion(tmp_path: Path) -> None:
    env = await time_skipping()
    try:
        world = World.make(env, tmp_path, "tq-priority", "core_offer", "promo")
        world.settings = world.settings.model_copy(update={"cap_per_day": 1, "cap_per_week": None})
        world.deploy("core", CORE)
        world.deploy("promo", PROMO)
        async with world.worker():
            core_user = (await world.track("c0", "seen", [("phone", "13800003001")])).user_id
            ordinary = (await world.track("o0", "seen", [("phone", "13800003002")])).user_id
            assert core_user and ordinary
            change_tags(world.store, core_user, ["core"], source="api", add=True)
            for user, phone in ((core_user, "13800003001"), (ordinary, "13800003002")):
                outcome = await world.track(f"sale-{user}", "big_sale", [("phone", phone)])
                assert len(outcome.started) == 2
                for journey in ("core", "promo"):
                    assert await world.result(journey, user) == "completed"
        core_sent = {(d.user_id, d.status) for d in world.sent("core")}
        promo_sent = {d.user_id: d for d in world.sent("promo")}
        assert core_sent == {(core_user, "sent")}
        assert promo_sent[ordinary].status == "sent"
        lost = promo_sent[core_user]
        assert lost.status == "suppressed"
        assert lost.reason is not None and "core" in lost.reason  # names the journey that won
    finally:
        await env.shutdown()
