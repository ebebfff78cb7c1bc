"""Journeys whose histories are committed for replay tests. The newest history
of ``every_step`` runs every step kind of ``dsl.ir.STEP_KINDS``
(``test_replay.py`` checks it); older ones replay the branches the patches
kept (``workflows.patches``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.runs import JourneyInput, UserEvent
from dsl.ir import Journey
from tests.workflows.support import journey


@dataclass
class Scenario:
    input: JourneyInput
    events: list[UserEvent] = field(default_factory=list)
    engine_kwargs: dict[str, Any] = field(default_factory=dict)


def _input(ir: Journey, user: str) -> JourneyInput:
    return JourneyInput(
        journey_id=ir.name,
        version=1,
        hash=ir.content_hash(),
        user_id=user,
        ir=ir,
        search_attributes=False,
    )


# Two orders arrive while the run waits for the first: the events are signalled
# right after the start, before any timer (a send in quiet hours waits too, so
# the wait comes first). The event branch waits until a date the event carries
# and loops back. From v6 on (the buffered-events patch) the second order,
# untaken by the first wait, is kept through the date wait and taken by the
# second (before it, that wait forgot it); the third times out and takes the rest.
# From v7 on (live-signals) a tag change arrives with them: the run reads the
# user again at once for its `exit when tag` rule (which does not hold).
EVERY_STEP = journey(
    """
    journey "every-step"
      goal event order_paid within 14d
      exit when event unsubscribed
      exit when tag blacklisted
      quiet hours 22:00-08:00

      label top
      wait for event order_paid up to 3d:
        on event:
          wait until event.paid_at + 1d at 10:00
          goto top
        on timeout:
          if not tag ordered:
            pass
          split:
            50% A: send sms "a"
            50% B: send best of push, sms "b"
      send wecom "welcome"
      coupon "new_user"
        on out_of_stock: send wecom "sorry"
      tag add welcomed
      wait 1d
      wait until 10:00
      wait until user.term_start - 7d
      exit
    """
)

# A send a frequency cap stops twice under `on capped defer`, then sent (the
# fake engine answers "capped, retry in an hour"), and one that skips (v8 on).
CAP_DEFER = journey(
    """
    journey "cap-defer"
      on capped defer up to 1d
      exit when event unsubscribed
      send sms "promo"
      send sms "later" on capped skip
    """
)

# A split test (v9 on): the run asks when the test started, and — held or not,
# by its seeded draw — takes the variant; a held run sleeps to the window's
# end and asks for the decision.
SPLIT_TEST = journey(
    """
    journey "split-test"
      goal event order_paid within 1d
      split test 50% for 6h by goal:
        50% A: send sms "a"
        50% B: send sms "b"
        otherwise: B
    """
)

# The same with a 1% sample: the recorded run was held (its history has the
# window's timer and the decision's ask).
SPLIT_TEST_HELD = journey(
    """
    journey "split-test-held"
      goal event order_paid within 1d
      split test 1% for 6h by goal:
        50% A: send sms "a"
        50% B: send sms "b"
    """
)

SCENARIOS: dict[str, Scenario] = {
    "every_step": Scenario(
        input=_input(EVERY_STEP, "u1"),
        events=[
            UserEvent(id="e1", name="viewed"),
            UserEvent(id="t1", name="tag_added", properties={"tag": "vip", "source": "api"}),
            UserEvent(id="o1", name="order_paid", properties={"paid_at": "2027-01-15"}),
            UserEvent(id="o2", name="order_paid", properties={"paid_at": "2027-01-20"}),
        ],
        engine_kwargs={"stock": {"new_user": 0}, "attributes": {"u1": {"term_start": "2027-03-01"}}},
    ),
    "split_test": Scenario(
        input=_input(SPLIT_TEST, "u1"),
        engine_kwargs={"split_winners": {"split-A-B": "A"}},
    ),
    "split_test_held": Scenario(
        input=_input(SPLIT_TEST_HELD, "u1"),
        engine_kwargs={"split_winners": {"split-A-B": "B"}},
    ),
    "cap_defer": Scenario(
        input=_input(CAP_DEFER, "u1"),
        engine_kwargs={"capped_times": {"promo": 2, "later": 1}},
    ),
}
