from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select
from temporalio.exceptions import ApplicationError

from contracts.activities import (
    BeginRunRequest,
    CouponRequest,
    EndRunRequest,
    EventCountQuery,
    RecordStepsRequest,
    SendRequest,
    StepRecord,
    TagRequest,
    UserSnapshotRequest,
)
from dsl.ir import CHANNELS
from engine.activities import JourneyActivities
from engine.channels.base import ProviderResult
from engine.consent import opt_out
from engine.coupons import upsert_pool
from engine.events import ingest_event, link_identities
from engine.settings import Settings
from engine.stats import journey_summary, node_counts, variant_counts
from engine.store import Store
from engine.store.models import CapUsage, Delivery
from engine.templates import upsert_template
from engine.timeline import user_timeline
from tests.engine.engine_support import NOW, FakeProvider

D = timedelta(days=1)


def make(store: Store, **settings_kw: object) -> tuple[JourneyActivities, dict[str, FakeProvider]]:
    providers = {c: FakeProvider(c) for c in ("sms", "push", "wecom", "webhook", "email")}
    settings = Settings(cap_per_day=settings_kw.pop("cap_per_day", 2), cap_per_week=5, **settings_kw)
    return JourneyActivities(store, providers, settings), providers


def send_req(key: str, user: str, template: str = "promo", channels: tuple[str, ...] = ("sms",), **kw) -> SendRequest:  # noqa: ANN003
    base = dict(
        idempotency_key=key,
        run_key=f"run-{user}",
        journey_id="j1",
        version=1,
        node_id="n1",
        user_id=user,
        channels=list(channels),
        template=template,
        now=NOW,
    )
    base.update(kw)
    return SendRequest(**base)


def deliveries(store: Store) -> list[Delivery]:
    with store.read() as s:
        return list(s.scalars(select(Delivery).order_by(Delivery.created_at)))


@pytest.fixture
def user(store: Store) -> str:
    upsert_template(store, "promo", "{{ user.name }}，新品上架", channel_bodies={"sms": "【店】{{ user.name }}，新品"})
    upsert_template(store, "otp", "验证码 {{ event.code }}", transactional=True)
    upsert_template(store, "coupon_msg", "券码 {{ coupon.code }}")
    return link_identities(
        store,
        {"phone": "13800138000", "app_user_id": "app-1"},
        attributes={"name": "小王", "timezone": "Asia/Shanghai"},
    )


# ---------------------------------------------------------------- send


async def test_send_is_exactly_once_per_key(store: Store, user: str) -> None:
    acts, p = make(store)
    first = await acts.send(send_req("k1", user))
    second = await acts.send(send_req("k1", user))
    assert first.status == second.status == "sent"
    assert first.delivery_id == second.delivery_id
    assert len(p["sms"].calls) == 1
    msg = p["sms"].calls[0]
    assert (msg.idempotency_key, msg.address, msg.body) == ("k1", "13800138000", "【店】小王，新品")
    with store.read() as s:
        assert s.query(CapUsage).count() == 1


async def test_retryable_failure_raises_then_retry_sends_once(store: Store, user: str) -> None:
    acts, p = make(store)
    p["sms"].script = [ProviderResult(status="failed", error="503", retryable=True), ConnectionError("reset")]
    with pytest.raises(ApplicationError):
        await acts.send(send_req("k1", user))
    with pytest.raises(ApplicationError):
        await acts.send(send_req("k1", user))
    assert (await acts.send(send_req("k1", user))).status == "sent"
    assert (await acts.send(send_req("k1", user))).status == "sent"
    assert [m.idempotency_key for m in p["sms"].calls] == ["k1", "k1", "k1"]
    [row] = deliveries(store)
    assert (row.status, row.attempts) == ("sent", 3)


async def test_retryable_failures_give_up_after_max_attempts(store: Store, user: str) -> None:
    acts, p = make(store, send_max_attempts=2)
    p["sms"].script = [ProviderResult(status="failed", error="503", retryable=True)] * 5
    with pytest.raises(ApplicationError):
        await acts.send(send_req("k1", user))
    result = await acts.send(send_req("k1", user))
    assert result.status == "failed" and "gave up after 2 attempts" in result.reason


async def test_non_retryable_failure_is_recorded_and_frees_the_cap_slot(store: Store, user: str) -> None:
    acts, p = make(store, cap_per_day=1)
    p["sms"].script = [ProviderResult(status="failed", error="invalid number", retryable=False)]
    result = await acts.send(send_req("k1", user))
    assert (result.status, result.reason) == ("failed", "invalid number")
    assert (await acts.send(send_req("k2", user))).status == "sent"


async def test_missing_variable_fails_with_reason_and_sends_nothing(store: Store, user: str) -> None:
    acts, p = make(store)
    result = await acts.send(send_req("k1", user, template="coupon_msg"))
    assert result.status == "failed"
    assert "missing variable" in result.reason and "coupon" in result.reason
    assert p["sms"].calls == []
    [row] = deliveries(store)
    assert (row.status, row.reason) == ("failed", result.reason)
    ok = await acts.send(send_req("k2", user, template="coupon_msg", coupon={"code": "JC1"}))
    assert ok.status == "sent" and p["sms"].calls[0].body == "券码 JC1"


async def test_holdout_unknown_template_and_missing_provider(store: Store, user: str) -> None:
    acts, p = make(store)
    held = await acts.send(send_req("k1", user, holdout=True))
    assert (held.status, held.reason) == ("suppressed", "holdout")
    unknown = await acts.send(send_req("k2", user, template="nope"))
    assert unknown.status == "failed" and "unknown template" in unknown.reason
    del acts.providers["sms"]
    missing = await acts.send(send_req("k3", user))
    assert missing.status == "failed" and "no provider" in missing.reason
    assert all(not prov.calls for prov in p.values())


async def test_best_of_picks_first_reachable_and_honours_opt_out(store: Store, user: str) -> None:
    acts, p = make(store, cap_per_day=10)
    best = ("wecom", "push", "sms")
    r = await acts.send(send_req("k1", user, channels=best, best_of=True))
    assert (r.status, r.channel) == ("sent", "push")  # no WeCom contact; the app beats paid SMS
    opt_out(store, user, "push")
    r = await acts.send(send_req("k2", user, channels=best, best_of=True))
    assert (r.status, r.channel) == ("sent", "sms")
    r = await acts.send(send_req("k3", user, channels=("wecom",), best_of=True))
    assert r.status == "suppressed" and "unreachable" in r.reason
    r = await acts.send(send_req("k4", user, channels=("push",)))
    assert (r.status, r.reason) == ("suppressed", "opted out of push")
    r = await acts.send(send_req("k5", user, channels=("email",)))
    assert r.status == "suppressed" and "no address" in r.reason
    assert [len(p[c].calls) for c in ("wecom", "push", "sms", "email")] == [0, 1, 1, 0]


async def test_caps_suppress_marketing_but_not_transactional(store: Store, user: str) -> None:
    acts, p = make(store, cap_per_day=2)
    statuses = [(await acts.send(send_req(f"k{i}", user, now=NOW + i * timedelta(minutes=1)))).status for i in range(3)]
    assert statuses == ["sent", "sent", "suppressed"]
    capped = deliveries(store)[-1]
    assert capped.reason.startswith("frequency cap")
    otp = await acts.send(send_req("otp", user, template="otp", event={"code": "1234"}))
    assert otp.status == "sent" and p["sms"].calls[-1].body == "验证码 1234"
    # the window is relative to the request's now: a day later it opens again
    assert (await acts.send(send_req("k9", user, now=NOW + 2 * D))).status == "sent"


async def test_concurrent_sends_respect_global_cap(store: Store, user: str) -> None:
    acts, p = make(store, cap_per_day=2)
    results = await asyncio.gather(
        *(acts.send(send_req(f"k{i}", user, run_key=f"run{i}", journey_id=f"j{i}")) for i in range(10))
    )
    assert sorted(r.status for r in results).count("sent") == 2
    assert len(p["sms"].calls) == 2


async def test_send_to_merged_user_id_uses_survivor(store: Store, user: str) -> None:
    acts, p = make(store)
    other = link_identities(store, {"openid": "o-x"}, attributes={"name": "别名"})
    link_identities(store, {"openid": "o-x", "phone": "13800138000"})
    r = await acts.send(send_req("k1", other))
    assert r.status == "sent" and p["sms"].calls[0].user_id == user


# ---------------------------------------------------------------- snapshot


async def test_user_snapshot_reachability_consent_and_event_counts(store: Store, user: str) -> None:
    acts, _ = make(store)
    for i, days in enumerate([1, 3, 10, 40]):
        ingest_event(store, event_id=f"v{i}", name="page_viewed", user_id=user, occurred_at=NOW - days * D, now=NOW)
    ingest_event(store, event_id="o1", name="order_paid", user_id=user, occurred_at=NOW - 2 * D, now=NOW)
    opt_out(store, user, "sms")
    snap = await acts.user_snapshot(
        UserSnapshotRequest(
            user_id=user,
            now=NOW,
            event_counts=[
                EventCountQuery(event="page_viewed", within_seconds=7 * 86400),
                EventCountQuery(event="page_viewed", within_seconds=30 * 86400),
                EventCountQuery(event="page_viewed"),
                EventCountQuery(event="order_paid", within_seconds=86400),
            ],
            templates=["promo", "otp", "missing"],
        )
    )
    assert snap.exists and snap.user_id == user
    assert snap.reachable == ["push", "webhook"]  # sms opted out, no WeCom / email address
    assert snap.event_counts == {
        "page_viewed|604800": 2,
        "page_viewed|2592000": 3,
        "page_viewed|": 4,
        "order_paid|86400": 0,
    }
    assert snap.transactional_templates == ["otp"]
    assert snap.stage == "paying" and snap.timezone == "Asia/Shanghai" and snap.attributes["name"] == "小王"
    assert "stage:paying" in snap.tags
    # Stage follows the request's time, not the stored tag: 60 days later the user churned.
    later = await acts.user_snapshot(UserSnapshotRequest(user_id=user, now=NOW + 60 * D))
    assert later.stage == "churned" and "stage:churned" in later.tags and "stage:paying" not in later.tags


async def test_user_snapshot_of_unknown_user(store: Store) -> None:
    acts, _ = make(store)
    snap = await acts.user_snapshot(
        UserSnapshotRequest(user_id="ghost", now=NOW, event_counts=[EventCountQuery(event="x")])
    )
    assert (snap.exists, snap.reachable, snap.event_counts) == (False, ["webhook"], {"x|": 0})


async def test_snapshot_reachability_and_the_send_decision_agree(store: Store, user: str) -> None:
    """``reachable push`` in a condition and a send on push give the same
    answer for every channel: both ask ``engine.consent.Reach``."""
    acts, _ = make(store)
    opt_out(store, user, "sms")
    snap = await acts.user_snapshot(UserSnapshotRequest(user_id=user, now=NOW))
    sent = []
    for i, channel in enumerate(CHANNELS):
        result = await acts.send(send_req(f"agree-{i}", user, template="otp", channels=(channel,)))
        if result.status != "suppressed":
            sent.append(channel)
    assert snap.reachable == ["push", "webhook"]
    assert sent == snap.reachable


# ---------------------------------------------------------------- runs


def begin(user: str, run: str, mode: str, at=NOW, cooldown: int | None = None) -> BeginRunRequest:  # noqa: ANN001
    return BeginRunRequest(
        run_key=run, journey_id="j1", version=1, user_id=user, reentry_mode=mode, cooldown_seconds=cooldown, now=at
    )


async def test_begin_run_once(store: Store, user: str) -> None:
    acts, _ = make(store)
    assert (await acts.begin_run(begin(user, "r1", "once"))).allowed
    assert (await acts.begin_run(begin(user, "r1", "once"))).allowed  # same run asking again
    second = await acts.begin_run(begin(user, "r2", "once", at=NOW + 400 * D))
    assert not second.allowed and "once" in second.reason
    assert (await acts.begin_run(begin(user, "r2", "once", at=NOW + 400 * D))) == second
    assert (await acts.begin_run(begin("someone-else", "r3", "once"))).allowed


async def test_begin_run_after_cooldown(store: Store, user: str) -> None:
    acts, _ = make(store)
    cd = 30 * 86400
    assert (await acts.begin_run(begin(user, "r1", "after", cooldown=cd))).allowed
    early = await acts.begin_run(begin(user, "r2", "after", at=NOW + 10 * D, cooldown=cd))
    assert not early.allowed and "cooling down" in early.reason
    assert (await acts.begin_run(begin(user, "r3", "after", at=NOW + 31 * D, cooldown=cd))).allowed
    # the cool-down restarts from the latest admitted entry, not the refused one
    assert not (await acts.begin_run(begin(user, "r4", "after", at=NOW + 40 * D, cooldown=cd))).allowed


async def test_begin_run_always_and_end_run(store: Store, user: str) -> None:
    acts, _ = make(store)
    assert all([(await acts.begin_run(begin(user, f"r{i}", "always"))).allowed for i in range(3)])
    await acts.end_run(EndRunRequest(run_key="r0", journey_id="j1", user_id=user, outcome="converted", now=NOW + D))
    await acts.end_run(EndRunRequest(run_key="r0", journey_id="j1", user_id=user, outcome="failed", now=NOW + 2 * D))
    summary = journey_summary(store, "j1")
    assert (summary.entered, summary.active, summary.converted, summary.outcomes) == (3, 2, 1, {"converted": 1})


# ---------------------------------------------------------------- tags, coupons, steps, stats


async def test_change_tags_records_source(store: Store, user: str) -> None:
    acts, _ = make(store)
    await acts.change_tags(
        TagRequest(user_id=user, action="add", tags=["vip", "clicked"], source="journey:j1", now=NOW)
    )
    await acts.change_tags(TagRequest(user_id=user, action="remove", tags=["clicked"], source="journey:j1", now=NOW))
    snap = await acts.user_snapshot(UserSnapshotRequest(user_id=user, now=NOW))
    assert "vip" in snap.tags and "clicked" not in snap.tags
    from engine.store.models import TagHistory

    with store.read() as s:
        history = [
            (h.tag, h.action, h.source) for h in s.scalars(select(TagHistory).where(TagHistory.tag == "clicked"))
        ]
    assert history == [("clicked", "add", "journey:j1"), ("clicked", "remove", "journey:j1")]


async def test_issue_coupon_activity(store: Store, user: str) -> None:
    acts, _ = make(store)
    upsert_pool(store, "first_order", stock=1, value={"amount": 10})
    req = CouponRequest(
        idempotency_key="c1", run_key="r1", journey_id="j1", node_id="n2", user_id=user, pool="first_order", now=NOW
    )
    a, b = await acts.issue_coupon(req), await acts.issue_coupon(req)
    assert a.status == b.status == "issued" and a.code == b.code and a.coupon["amount"] == 10
    other = await acts.issue_coupon(req.model_copy(update={"idempotency_key": "c2", "user_id": "u-2"}))
    assert other.status == "out_of_stock"


async def test_record_steps_idempotent_and_stats(store: Store, user: str) -> None:
    acts, _ = make(store)
    for i, variant in enumerate(["A", "A", "B"]):
        assert (await acts.begin_run(begin(f"{user}-{i}", f"r{i}", "always"))).allowed
        records = [
            StepRecord(
                run_key=f"r{i}",
                journey_id="j1",
                version=1,
                user_id=f"{user}-{i}",
                node_id="enter",
                kind="enter",
                outcome="entered",
                at=NOW,
            ),
            StepRecord(
                run_key=f"r{i}",
                journey_id="j1",
                version=1,
                user_id=f"{user}-{i}",
                node_id="s1",
                kind="split",
                outcome=f"variant:{variant}",
                variant=variant,
                at=NOW,
            ),
        ]
        await acts.record_steps(RecordStepsRequest(records=records))
        await acts.record_steps(RecordStepsRequest(records=records))  # retried activity
    # a loop visiting the same node twice at the same instant is two records (seq differs)
    loop = [
        StepRecord(
            run_key="r0",
            seq=10 + n,
            journey_id="j1",
            version=1,
            user_id=f"{user}-0",
            node_id="w",
            kind="wait",
            outcome="waiting",
            at=NOW,
        )
        for n in range(2)
    ]
    await acts.record_steps(RecordStepsRequest(records=loop))
    await acts.record_steps(RecordStepsRequest(records=loop))
    from engine.store.models import StepRecord as StepRow

    with store.read() as s:
        assert s.query(StepRow).count() == 3 * 2 + 2
    goal = StepRecord(
        run_key="r0",
        journey_id="j1",
        version=1,
        user_id=f"{user}-0",
        node_id="goal",
        kind="goal",
        outcome="converted",
        variant="A",
        at=NOW + D,
    )
    await acts.record_steps(RecordStepsRequest(records=[goal]))
    await acts.send(send_req("k1", user, node_id="n1", run_key="r-x"))
    await acts.send(send_req("k2", user, node_id="n1", holdout=True))

    nodes = node_counts(store, "j1", 1)
    assert nodes["enter"].entered == 3
    assert nodes["s1"].outcomes == {"variant:A": 2, "variant:B": 1}
    assert (nodes["n1"].sent, nodes["n1"].suppressed) == (1, 1)
    variants = {v.variant: (v.entered, v.converted) for v in variant_counts(store, "j1")}
    assert variants == {"A": (2, 1), "B": (1, 0)}

    timeline = user_timeline(store, user)
    assert [i.kind for i in timeline] == ["delivery", "delivery"]
    assert user_timeline(store, f"{user}-0")[-1].summary == "goal: converted"


async def test_pending_sends_are_settled_by_polling(store: Store, user: str) -> None:
    from engine import ledger

    class PollingProvider(FakeProvider):
        def __init__(self) -> None:
            super().__init__("sms", [ProviderResult(status="pending", provider_message_id="task-1")])
            self.answers = [ProviderResult(status="pending"), ProviderResult(status="failed", error="staff declined")]

        async def poll_result(self, provider_message_id: str) -> ProviderResult:
            assert provider_message_id == "task-1"
            return self.answers.pop(0)

    acts, _ = make(store, cap_per_day=1)
    acts.providers["sms"] = PollingProvider()
    assert (await acts.send(send_req("k1", user))).status == "pending"
    assert (await acts.send(send_req("k2", user))).status == "suppressed"  # pending counts against the cap
    assert await ledger.poll_pending(store, acts.providers) == 0  # still waiting
    assert await ledger.poll_pending(store, acts.providers) == 1
    assert ledger.lookup(store, "k1").status == "failed" and ledger.pending(store) == []
    assert (await acts.send(send_req("k3", user))).status == "sent"  # the declined task freed its slot
