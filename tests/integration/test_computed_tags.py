"""Tags from event and user data (scenarios 5 and 13) on the time-skipping
server with the real engine: journey text plus scripted events. A
placement becomes a source tag, unsafe characters are made safe, a missing
value is skipped with the reason in the timeline's record."""

from __future__ import annotations

from pathlib import Path

from engine.identity import set_attributes
from engine.tags import tags_of
from tests.integration.live_world import World, time_skipping

JOURNEY = """\
journey "scan source"
  entry event qr_scanned
  reentry always
  tag add scanned, "src_" + event.placement, user.city + "_fan"
"""


async def test_a_scan_tags_the_user_with_its_placement(tmp_path: Path) -> None:
    env = await time_skipping()
    try:
        world = World.make(env, tmp_path, "tq-computed-tags")
        world.deploy("scan", JOURNEY)
        async with world.worker():
            first = await world.track("s1", "qr_scanned", [("phone", "13800005001")], placement="poster A/lobby")
            uid = first.user_id
            assert uid is not None
            assert await world.result("scan", uid) == "completed"
            with world.store.read() as s:
                tags = set(tags_of(s, uid))
            assert {"scanned", "src_poster_A_lobby"} <= tags  # "poster A/lobby" made safe
            assert not any(t.endswith("_fan") for t in tags)  # no city yet: skipped
            [record] = [r for r in world.steps("scan") if r.kind == "tag"]
            assert record.detail["skipped"] == ["user.city is missing"]

            world.store.transact(lambda s: set_attributes(s, uid, {"city": "杭州"}))
            second = await world.track("s2", "qr_scanned", [("phone", "13800005001")])  # no placement this time
            assert second.user_id == uid
            assert await world.result("scan", uid) == "completed"
            with world.store.read() as s:
                tags = set(tags_of(s, uid))
            assert "杭州_fan" in tags
            last = [r for r in world.steps("scan") if r.kind == "tag"][-1]
            assert last.detail["skipped"] == ["event.placement is missing"]
    finally:
        await env.shutdown()
