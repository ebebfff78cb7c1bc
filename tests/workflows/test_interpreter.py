"""Time-skipping tests of the interpreter, one or more per step kind, with the
journeys written as operators write them."""

from __future__ import annotations

from datetime import timedelta

from contracts.runs import UserEvent
from runtime.worker import build_worker
from tests.workflows.fakes import FakeEngine
from tests.workflows.support import TQ, journey, shanghai, start, waiting_at


async def test_thirty_day_journey_sends_in_order(ts_env):
    engine = FakeEngine()
    ir = journey(
        """
        journey "long"
          send wecom "welcome"
          wait 30d
          send sms "month_later"
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        assert await handle.result() == "completed"
    assert engine.sent_templates() == ["welcome", "month_later"]
    assert engine.sends[1].now - engine.sends[0].now >= timedelta(days=30)


async def test_quiet_hours_across_midnight_defer_to_morning(ts_env):
    engine = FakeEngine(transactional={"otp"})
    ir = journey(
        """
        journey "quiet"
          quiet hours 22:00-08:00
          wait until 23:30
          send sms "otp"
          send sms "promo"
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        await handle.result()
    otp, promo = engine.sends
    assert (shanghai(otp.now).hour, shanghai(otp.now).minute) == (23, 30)  # transactional: not deferred
    local = shanghai(promo.now)
    assert (local.hour, local.minute) == (8, 0)
    assert local.date() > shanghai(otp.now).date()
    deferred = [r for r in engine.records if r.outcome == "deferred"]
    assert [r.node_id for r in deferred] == [ir.steps[2].id]


async def test_wait_for_event_both_branches_and_event_properties(ts_env):
    engine = FakeEngine()
    ir = journey(
        """
        journey "wfe"
          wait for event order_paid up to 3d:
            on event:
              tag add first_order
            on timeout:
              send sms "nudge"
          send wecom "after"
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        answered = await start(ts_env, ir, user="buyer")
        silent = await start(ts_env, ir, user="silent")
        await answered.signal("event", UserEvent(id="e0", name="viewed"))
        await answered.signal("event", UserEvent(id="e1", name="order_paid", properties={"amount": 99}))
        assert await answered.result() == "completed"
        assert await silent.result() == "completed"
    buyer = [s for s in engine.sends if s.user_id == "buyer"]
    assert [s.template for s in buyer] == ["after"]
    assert buyer[0].event["amount"] == 99
    assert engine.tags["buyer"] == {"first_order"}
    assert [s.template for s in engine.sends if s.user_id == "silent"] == ["nudge", "after"]


async def test_exit_event_interrupts_long_wait_and_duplicates_are_ignored(ts_env):
    engine = FakeEngine()
    ir = journey(
        """
        journey "exit"
          goal event order_paid within 14d
          exit when event unsubscribed
          send wecom "hello"
          wait 20d
          send wecom "never"
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        await waiting_at(handle, ir.steps[1].id)
        await handle.signal("event", UserEvent(id="o1", name="order_paid"))
        await handle.signal("event", UserEvent(id="o1", name="order_paid"))
        await handle.signal("event", UserEvent(id="u1", name="unsubscribed"))
        assert await handle.result() == "exited"
    assert engine.sent_templates() == ["hello"]
    goals = [r for r in engine.records if r.kind == "goal"]
    assert len(goals) == 1
    assert engine.ends[-1].outcome == "exited"


async def test_goal_then_exit_ends_run(ts_env):
    engine = FakeEngine()
    ir = journey(
        """
        journey "goal-exit"
          goal event order_paid then exit
          wait 5d
          send sms "late"
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        await handle.signal("event", UserEvent(id="o", name="order_paid"))
        assert await handle.result() == "exited"
    assert engine.sends == []
    assert any(r.kind == "goal" and r.outcome == "converted" for r in engine.records)


async def test_if_on_tags_coupon_out_of_stock_and_tag_exit(ts_env):
    engine = FakeEngine(stock={"empty": 0})
    engine.tags["u-visited"] = {"visited"}
    ir = journey(
        """
        journey "branch"
          exit when tag blacklisted
          if not tag visited:
            send sms "not_visited"
          else:
            coupon "empty"
              on out_of_stock: send wecom "sorry"
            tag add blacklisted
            send wecom "blocked"
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        assert await (await start(ts_env, ir, user="u-new")).result() == "completed"
        assert await (await start(ts_env, ir, user="u-visited")).result() == "exited"
    assert [(s.user_id, s.template) for s in engine.sends] == [("u-new", "not_visited"), ("u-visited", "sorry")]


async def test_split_is_recorded_and_holdout_is_suppressed(ts_env):
    engine = FakeEngine()
    ir = journey(
        """
        journey "split"
          split:
            50% A: send sms "a"
            50% holdout
          send wecom "all"
        """
    )
    split = ir.steps[0].id
    async with build_worker(ts_env.client, engine.all(), TQ):
        handles = [await start(ts_env, ir, user=f"s{i}") for i in range(20)]
        for h in handles:
            await h.result()
    chosen = {r.user_id: r.outcome for r in engine.records if r.node_id == split}
    assert set(chosen.values()) == {"variant:A", "variant:holdout"}
    for send in engine.sends:
        assert send.holdout == (chosen[send.user_id] == "variant:holdout")
        assert send.variant == chosen[send.user_id].split(":")[1]


async def test_goto_loop_continues_as_new_and_keeps_state(ts_env):
    engine = FakeEngine()
    ir = journey(
        """
        journey "loop"
          label top
          wait for event friend_invited up to 7d:
            on event:
              tag add inviter
              goto top
            on timeout:
              send wecom "done"
        """
    )
    invite = ir.steps[1].id
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir, continue_after_steps=3)
        for i in range(4):
            await handle.signal("event", UserEvent(id=f"inv{i}", name="friend_invited"))
            # the same event again (a retried ingest) must not count twice
            await handle.signal("event", UserEvent(id=f"inv{i}", name="friend_invited"))
            await ts_env.sleep(timedelta(hours=1))
        assert await handle.result() == "completed"
        desc = await handle.describe()
    assert engine.sent_templates() == ["done"]
    answered = [r for r in engine.records if r.node_id == invite and r.outcome == "event"]
    assert len(answered) == 4
    assert desc.run_id != handle.first_execution_run_id  # it did continue as new
    run_keys = {r.run_key for r in engine.records}
    assert len(run_keys) == 1  # one logical run across continue-as-new


async def test_wait_date_from_attribute_best_of_and_exit_step(ts_env):
    engine = FakeEngine()
    engine.reachable["student"] = ["sms", "email"]
    # the term starts ten days from the (time-skipped) now; remind a week before, at 10:00 local
    now = await ts_env.get_current_time()
    term_start = shanghai(now + timedelta(days=10)).date()
    engine.attributes["student"] = {"term_start": term_start.isoformat()}
    ir = journey(
        """
        journey "term"
          wait until user.term_start - 7d at 10:00
          send best of wecom, push, sms "term_offer"
          exit
          send sms "never"
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir, user="student")
        assert await handle.result() == "exited"
    (send,) = engine.sends
    local = shanghai(send.now)
    assert local.date() == term_start - timedelta(days=7)
    assert (local.hour, local.minute) == (10, 0)
    assert send.best_of and send.channels == ["wecom", "push", "sms"]
    sent = [r for r in engine.records if r.node_id == ir.steps[1].id]
    assert sent[-1].detail["channel"] == "sms"  # first reachable in the operator's order
    assert engine.ends[-1].reason == "exit step"


async def test_wait_date_without_the_attribute_passes_and_says_why(ts_env):
    engine = FakeEngine()
    ir = journey(
        """
        journey "no-term"
          wait until user.term_start - 7d
          pass
          send sms "now"
        """
    )
    now = await ts_env.get_current_time()
    async with build_worker(ts_env.client, engine.all(), TQ):
        assert await (await start(ts_env, ir)).result() == "completed"
    assert engine.sends[0].now - now < timedelta(minutes=1)
    (record,) = [r for r in engine.records if r.node_id == ir.steps[0].id]
    assert (record.outcome, record.detail) == ("no_date", {"attribute": "term_start", "reason": "missing"})
    assert [r.outcome for r in engine.records if r.node_id == ir.steps[1].id] == ["passed"]


async def test_if_on_event_counts_stage_and_attributes(ts_env):
    engine = FakeEngine()
    engine.event_counts["order_paid|2592000"] = 3
    engine.attributes["shanghai"] = {"city": "上海"}
    ir = journey(
        """
        journey "conds"
          if count order_paid within 30d >= 2:
            send sms "loyal"
          else if user.city == "上海" or stage is silent:
            send sms "city"
          else:
            send sms "other"
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        for user in ("loyal", "shanghai", "nobody"):
            if user != "loyal":
                engine.event_counts.clear()
            await (await start(ts_env, ir, user=user)).result()
    assert [(s.user_id, s.template) for s in engine.sends] == [
        ("loyal", "loyal"),
        ("shanghai", "city"),
        ("nobody", "other"),
    ]


async def test_a_capped_send_defers_goes_round_and_skips_when_told(ts_env):
    engine = FakeEngine(capped_times={"promo": 2, "later": 1})
    ir = journey(
        """
        journey "capped"
          on capped defer up to 1d
          send sms "promo"
          send sms "later" on capped skip
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        assert await handle.result() == "completed"
    promo, later = ir.steps
    # asked three times with the same key: capped, capped, sent — an hour apart
    asked = [s for s in engine.sends if s.node_id == promo.id]
    assert len(asked) == 1 and engine.sent[asked[0].idempotency_key].status == "sent"
    assert asked[0].defer_until is not None
    deferred = [r for r in engine.records if r.outcome == "deferred"]
    assert [r.node_id for r in deferred] == [promo.id, promo.id]
    assert all(r.detail["reason"] == "frequency cap (fake)" for r in deferred)
    outcomes = [(r.node_id, r.outcome) for r in engine.records if r.kind == "send"]
    assert outcomes[-2:] == [(promo.id, "sent"), (later.id, "suppressed")]
    [later_req] = [s for s in engine.sends if s.node_id == later.id]
    assert later_req.defer_until is None  # the send's own skip wins over the header's defer
    # the deadline stays the one set when the send was reached: two hours on, 22h were left
    left = asked[0].defer_until - asked[0].now
    assert timedelta(hours=21, minutes=59) < left <= timedelta(hours=22)


async def test_a_deferral_never_outlives_its_longest_delay(ts_env):
    engine = FakeEngine(capped_times={"promo": 100})  # capped forever
    ir = journey(
        """
        journey "capped"
          on capped defer up to 3h
          send sms "promo"
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handle = await start(ts_env, ir)
        assert await handle.result() == "completed"
    deferred = [r for r in engine.records if r.outcome == "deferred"]
    assert len(deferred) == 3  # +1h, +2h, +3h; at +3h the deferral is over
    [final] = [s for s in engine.sends]
    assert final.defer_until is None
    assert engine.sent[final.idempotency_key].status == "suppressed"


async def test_a_split_test_draws_a_sample_holds_the_rest_then_gives_them_the_winner(ts_env):
    engine = FakeEngine(split_winners={"split-A-B": "B"})
    ir = journey(
        """
        journey "copy test"
          goal event order_paid within 1d
          split test 50% for 6h by goal:
            50% A: send sms "copy_a"
            50% B: send sms "copy_b"
          send sms "after"
        """
    )
    async with build_worker(ts_env.client, engine.all(), TQ):
        handles = [await start(ts_env, ir, user=f"u{i}") for i in range(16)]
        for h in handles:
            assert await h.result() == "completed"
        late = await start(ts_env, ir, user="late")  # after the decision: the winner, no wait
        assert await late.result() == "completed"
    splits = [r for r in engine.records if r.node_id == "split-A-B" and r.kind == "split"]
    tested = [r for r in splits if (r.detail or {}).get("test")]
    held = [r for r in splits if r.outcome == "held"]
    winners = [r for r in splits if (r.detail or {}).get("winner")]
    assert tested and held  # 16 runs at 50%: some in the test, some held
    assert len(tested) + len(held) == 16
    assert {r.outcome for r in winners} == {"variant:B"}
    assert len(winners) == len(held) + 1  # every held run, and the late one
    late_records = [r for r in splits if r.user_id == "late"]
    assert [r.outcome for r in late_records] == ["variant:B"]
    # the held ones were sent B's copy after the window, not before
    held_users = {r.user_id for r in held}
    held_sends = [s for s in engine.sends if s.user_id in held_users and s.template.startswith("copy")]
    assert {s.template for s in held_sends} == {"copy_b"}
