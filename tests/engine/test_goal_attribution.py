"""Goal attribution from the stored events (``engine.goals``): a run converts
when its user did the goal's event within the window after entering, whether
the run is open, completed or exited early; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from contracts.activities import StepRecord
from dsl import compile_source
from engine import catalog, experiments, goals, runs, stats
from engine.events import ingest_event, link_identities
from engine.store import Store

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
H = timedelta(hours=1)

SOURCE = """journey "{name}"
  entry api
  reentry always
  goal event order_paid within 1d{where}

  split:
    50% A: send sms "copy_a"
    50% B: send sms "copy_b"
"""


def deploy(store: Store, jid: str, where: str = "") -> int:
    ir = compile_source(SOURCE.format(name=jid, where=where))
    return catalog.publish(
        store, jid, name=jid, source="", ir=ir.model_dump(mode="json"), hash=ir.content_hash()
    ).version


def enter(
    store: Store,
    jid: str,
    member: str,
    variant: str,
    *,
    at: datetime = T0,
    version: int = 1,
    outcome: str | None = "completed",
    trigger: dict | None = None,
) -> str:
    """A run that entered at ``at``, took ``variant`` and (unless ``outcome``
    is None) ended a second later, as a journey ending on its send does."""
    uid = link_identities(store, {"member_id": member}, now=at - H)
    key = f"journey:{jid}:{uid}:{at:%H%M%S}"
    store.transact(
        lambda s: runs.begin(
            s,
            store,
            run_key=key,
            journey_id=jid,
            version=version,
            user_id=uid,
            mode="always",
            cooldown_seconds=None,
            now=at,
            trigger_event=trigger,
        )
    )
    split = StepRecord(
        run_key=key,
        seq=1,
        journey_id=jid,
        version=version,
        user_id=uid,
        node_id="split",
        kind="split",
        outcome=f"variant:{variant}",
        variant=variant,
        at=at,
    )
    runs.record_steps(store, [split])
    if outcome is not None:
        store.transact(
            lambda s: runs.end(
                s, run_key=key, journey_id=jid, user_id=uid, outcome=outcome, reason=None, now=at + timedelta(seconds=1)
            )
        )
    return uid


def paid(store: Store, member: str, at: datetime, n: int = 0, kind: str = "member_id", **props: object) -> None:
    ingest_event(
        store,
        event_id=f"paid-{member}-{at:%d%H%M%S}-{n}",
        name="order_paid",
        identifiers={kind: member},
        properties=dict(props),
        occurred_at=at,
    )


def by_variant(store: Store, jid: str, version: int | None = None) -> dict[str | None, tuple[int, int]]:
    found = goals.attribute(store, jid, version)
    return {
        v.variant: (v.entered, v.converted) for v in stats.goal_variant_counts(store, jid, found.per_variant(), version)
    }


def test_ended_runs_convert_from_the_stored_events(store: Store) -> None:
    jid = "recall"
    deploy(store, jid)
    for m, v in (("a1", "A"), ("a2", "A"), ("a3", "A"), ("b1", "B"), ("b2", "B")):
        enter(store, jid, m, v)
    paid(store, "a1", T0 + timedelta(seconds=2))  # 2 s after the run ended
    paid(store, "a1", T0 + 2 * H, n=1)  # twice: still one conversion
    paid(store, "a2", T0 + 23 * H)
    paid(store, "b1", T0 + 24 * H)  # the window's last instant is in it
    paid(store, "b2", T0 + 24 * H + timedelta(seconds=1))  # just outside
    paid(store, "a3", T0 - timedelta(minutes=5))  # before entering
    assert by_variant(store, jid) == {"A": (3, 2), "B": (2, 1)}
    # the interpreter saw none of it: the runs had ended
    assert {v.variant: v.converted for v in stats.variant_counts(store, jid)} == {"A": 0, "B": 0}
    found = goals.attribute(store, jid)
    assert sorted(c.at for c in found.conversions)[0] == T0 + timedelta(seconds=2)
    assert not found.incomplete


def test_a_run_that_exited_early_still_converts_and_open_runs_too(store: Store) -> None:
    jid = "exits"
    deploy(store, jid)
    enter(store, jid, "x1", "A", outcome="exited")
    enter(store, jid, "x2", "B", outcome=None)  # still going
    paid(store, "x1", T0 + 5 * H)
    paid(store, "x2", T0 + 6 * H)
    assert by_variant(store, jid) == {"A": (1, 1), "B": (1, 1)}


def test_a_merged_users_event_converts_the_run(store: Store) -> None:
    jid = "merged"
    deploy(store, jid)
    enter(store, jid, "m1", "A")
    # an order under the user's phone, not yet known as theirs
    paid(store, "13800000001", T0 + H, kind="phone")
    assert by_variant(store, jid) == {"A": (1, 0)}
    # later the phone and the member id are said to be one person
    link_identities(store, {"member_id": "m1", "phone": "13800000001"}, now=T0 + 2 * H)
    assert by_variant(store, jid) == {"A": (1, 1)}


def test_where_is_checked_on_the_event_properties(store: Store) -> None:
    jid = "big-orders"
    deploy(store, jid, where=" where amount >= 100")
    enter(store, jid, "w1", "A")
    enter(store, jid, "w2", "B")
    paid(store, "w1", T0 + H, amount=20)
    paid(store, "w1", T0 + 2 * H, n=1, amount="150.0")  # strings compare as numbers, as in the interpreter
    paid(store, "w2", T0 + H, amount=99)
    assert by_variant(store, jid) == {"A": (1, 1), "B": (1, 0)}
    [conversion] = goals.attribute(store, jid).conversions
    assert conversion.at == T0 + 2 * H


def test_the_entry_event_is_not_its_own_conversion(store: Store) -> None:
    jid = "enters-on-order"
    deploy(store, jid)
    paid(store, "t1", T0 + timedelta(seconds=5))  # a client clock a little ahead
    trigger = {"id": "paid-t1-02100005-0", "name": "order_paid"}
    enter(store, jid, "t1", "A", trigger=trigger)
    assert by_variant(store, jid) == {"A": (1, 0)}
    paid(store, "t1", T0 + H)
    assert by_variant(store, jid) == {"A": (1, 1)}


def test_each_version_is_judged_by_its_own_goal(store: Store) -> None:
    jid = "versions"
    deploy(store, jid)
    v2 = deploy(store, jid, where=" where amount >= 100")
    assert v2 == 2
    enter(store, jid, "v1", "A", version=1)
    enter(store, jid, "v2", "A", version=2)
    paid(store, "v1", T0 + H, amount=10)
    paid(store, "v2", T0 + H, amount=10)
    assert by_variant(store, jid) == {"A": (2, 1)}
    assert by_variant(store, jid, 1) == {"A": (1, 1)}
    assert by_variant(store, jid, 2) == {"A": (1, 0)}


def test_the_z_test_reads_the_attributed_numbers(store: Store) -> None:
    jid = "ztest"
    deploy(store, jid)
    for i in range(40):
        enter(store, jid, f"za{i}", "A")
        enter(store, jid, f"zb{i}", "B")
    for i in range(30):
        paid(store, f"za{i}", T0 + H)
    for i in range(5):
        paid(store, f"zb{i}", T0 + H)
    found = goals.attribute(store, jid)
    rows = {
        r.variant: r
        for r in experiments.variant_rows(stats.goal_variant_counts(store, jid, found.per_variant()), set())
    }
    assert (rows["A"].converted, rows["B"].converted) == (30, 5)
    [test] = rows["A"].tests
    z, p = experiments.two_proportion_z(30, 40, 5, 40)
    assert test.significant and test.z == round(z or 0, 4) and test.p_value == round(p or 0, 6)


def test_a_journey_without_a_goal_has_no_conversions(store: Store) -> None:
    jid = "no-goal"
    ir = compile_source('journey "no-goal"\n  entry api\n\n  send sms "x"\n')
    catalog.publish(store, jid, name=jid, source="", ir=ir.model_dump(mode="json"), hash=ir.content_hash())
    enter(store, jid, "n1", "A")
    paid(store, "n1", T0 + H)
    assert goals.attribute(store, jid).conversions == []


def test_two_runs_of_one_person_convert_once_after_a_merge(store: Store) -> None:
    """Two ids in the same journey, then known as one person: the merge ends
    the later run (``engine.merges``); the order converts the kept one."""
    jid = "dup"
    deploy(store, jid)
    enter(store, jid, "d1", "A", outcome=None)
    enter(store, jid, "d2", "B", outcome=None, at=T0 + timedelta(minutes=1))
    paid(store, "d2", T0 + H)
    assert by_variant(store, jid) == {"A": (1, 0), "B": (1, 1)}
    link_identities(store, [("member_id", "d1"), ("member_id", "d2")], now=T0 + 2 * H)
    assert by_variant(store, jid) == {"A": (1, 1), "B": (1, 0)}


def test_readouts_are_cumulative_per_variant() -> None:
    start = T0
    entered = [(T0 + timedelta(minutes=1), "A"), (T0 + timedelta(minutes=1), "B"), (T0 + 4 * H, "B")]
    sends = [(T0 + timedelta(minutes=2), "sent", "A"), (T0 + timedelta(minutes=2), "failed", "B")]
    converted = [(T0 + 2 * H, "A"), (T0 + 5 * H, "B"), (T0 + 13 * H, "B")]
    offsets = [("3h", 3 * H), ("6h", 6 * H), ("12h", 12 * H)]
    rows = experiments.readouts(start, offsets, T0 + 7 * H, entered, sends, converted)
    assert [(r.offset, r.complete, r.entered, r.sent, r.converted) for r in rows] == [
        ("3h", True, 2, 1, 1),
        ("6h", True, 3, 1, 2),
        ("12h", False, 3, 1, 2),
    ]
    six = {v.variant: (v.entered, v.sent, v.converted, v.conversion_rate) for v in rows[1].variants}
    assert six == {"A": (1, 1, 1, 1.0), "B": (2, 0, 1, 0.5)}
