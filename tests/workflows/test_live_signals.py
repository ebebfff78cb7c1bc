"""The live-signals revision on the fake engine: a ``merged`` signal ends a
run mid-wait with reason ``merged``, and a tag change ends a long wait at
once when an ``exit when tag`` rule now holds (issue 12 items 3 and 4)."""

from __future__ import annotations

from contracts.runs import MergedNotice, UserEvent
from runtime.worker import build_worker
from tests.workflows.fakes import FakeEngine
from tests.workflows.support import TQ, journey, start, waiting_at
from workflows.journey import JourneyWorkflow

LONG_WAIT = journey(
    """
    journey "long wait"
      exit when tag blacklisted
      wait 30d
      send sms "late"
    """
)


async def test_a_merged_signal_ends_the_run_mid_wait(ts_env) -> None:
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, LONG_WAIT)
        await waiting_at(handle, "wait-30d")
        await handle.signal(JourneyWorkflow.on_merged, MergedNotice(kept_run_key="other"))
        assert await handle.result() == "exited"
    assert engine.sends == []
    assert [(e.outcome, e.reason) for e in engine.ends] == [("exited", "merged")]
    (entered,) = [r.at for r in engine.records if r.outcome == "entered"]
    (ended,) = [r.at for r in engine.records if r.kind == "end"]
    assert (ended - entered).days == 0  # not at the end of the wait


async def test_a_tag_change_ends_a_long_wait_when_an_exit_rule_now_holds(ts_env) -> None:
    engine = FakeEngine()
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, LONG_WAIT, user="u2")
        await waiting_at(handle, "wait-30d")
        engine.tags["u2"] = {"vip"}  # another tag: the run reads the user, stays
        await handle.signal(JourneyWorkflow.on_event, UserEvent(id="t1", name="tag_added", properties={"tag": "vip"}))
        await waiting_at(handle, "wait-30d")
        engine.tags["u2"] = {"vip", "blacklisted"}
        await handle.signal(
            JourneyWorkflow.on_event, UserEvent(id="t2", name="tag_added", properties={"tag": "blacklisted"})
        )
        assert await handle.result() == "exited"
    assert engine.sends == []
    (entered,) = [r.at for r in engine.records if r.outcome == "entered"]
    (ended,) = [r.at for r in engine.records if r.kind == "end"]
    assert (ended - entered).days == 0
    assert [e.reason for e in engine.ends] == ["exit condition met"]
