from __future__ import annotations

from datetime import timedelta

import pytest

from engine.derived import UserFacts, compute
from engine.events import ingest_event
from engine.settings import DerivedRules
from engine.store import Store
from engine.store.models import Event, User
from engine.tags import tags_of
from tests.engine.engine_support import NOW

RULES = DerivedRules()
D = timedelta(days=1)


def facts(
    first_seen_days: float,
    last_event_days: float | None = None,
    last_payment_days: float | None = None,
    payments: int = 0,
    monetary: float = 0.0,
) -> UserFacts:
    return UserFacts(
        first_seen=NOW - first_seen_days * D,
        last_event_at=None if last_event_days is None else NOW - last_event_days * D,
        last_payment_at=None if last_payment_days is None else NOW - last_payment_days * D,
        payments_in_window=payments,
        monetary_in_window=monetary,
    )


@pytest.mark.parametrize(
    ("f", "stage"),
    [
        (facts(2, last_event_days=1), "new"),
        (facts(2, last_event_days=1, last_payment_days=1, payments=1), "paying"),  # paying beats new
        (facts(60, last_event_days=3), "active"),
        (facts(60, last_event_days=10), "silent"),
        (facts(60, last_event_days=45), "churned"),
        (facts(60, last_event_days=45, last_payment_days=45, payments=1), "churned"),  # old payment only
        (facts(60, last_event_days=2, last_payment_days=20, payments=1), "paying"),
        (facts(10), "silent"),  # seen 10 days ago, never did anything
        (facts(40), "churned"),
    ],
)
def test_stage_rules(f: UserFacts, stage: str) -> None:
    assert compute(f, NOW, RULES).stage == stage


def test_stage_thresholds_are_configurable() -> None:
    f = facts(60, last_event_days=10)
    assert compute(f, NOW, RULES).stage == "silent"
    assert compute(f, NOW, DerivedRules(active_days=14)).stage == "active"


@pytest.mark.parametrize(
    ("f", "layer", "code"),
    [
        (facts(400, 1, last_payment_days=5, payments=3, monetary=1500), "high", "R1F1M1"),
        (facts(400, 1, last_payment_days=5, payments=1, monetary=99), "mid", "R1F0M0"),
        (facts(400, 100, last_payment_days=100, payments=1, monetary=50), "low", "R0F0M0"),
        (facts(400, 1), None, None),
    ],
)
def test_rfm_layers(f: UserFacts, layer: str | None, code: str | None) -> None:
    result = compute(f, NOW, RULES)
    assert (result.rfm, result.rfm_code) == (layer, code)


def test_ingest_is_idempotent_and_updates_derived_tags(store: Store) -> None:
    first = ingest_event(
        store,
        event_id="m-1",
        name="order_paid",
        identifiers={"openid": "o-7"},
        properties={"amount": 1200},
        occurred_at=NOW - 2 * D,
        now=NOW,
    )
    assert first.new and first.stage == "paying" and first.rfm == "mid"
    again = ingest_event(
        store, event_id="m-1", name="order_paid", identifiers={"openid": "o-7"}, occurred_at=NOW, now=NOW
    )
    assert (again.user_id, again.new) == (first.user_id, False)
    with store.read() as s:
        assert s.query(Event).count() == 1
        assert {t for t in tags_of(s, first.user_id) if ":" in t} == {"stage:paying", "rfm:mid"}
        assert s.get(User, first.user_id).stage == "paying"

    # 40 days later a page view: no longer paying (payment is 42 days old); one tag per prefix.
    later = ingest_event(
        store,
        event_id="m-2",
        name="page_viewed",
        identifiers={"openid": "o-7"},
        now=NOW + 40 * D,
        occurred_at=NOW + 40 * D,
    )
    assert later.stage == "active"
    with store.read() as s:
        derived = sorted(t for t in tags_of(s, first.user_id) if t.startswith(("stage:", "rfm:")))
        assert derived == ["rfm:mid", "stage:active"]  # M stays high: 1200 within the year


def test_event_with_two_identifiers_lands_on_one_person(store: Store) -> None:
    a = ingest_event(store, event_id="x1", name="scan", identifiers={"anonymous_id": "dev"}, now=NOW).user_id
    b = ingest_event(store, event_id="x2", name="login", identifiers={"member_id": "M1"}, now=NOW).user_id
    c = ingest_event(
        store, event_id="x3", name="bind", identifiers={"anonymous_id": "dev", "member_id": "M1"}, now=NOW
    ).user_id
    assert c == a and b != a  # two users until the bind event; the first-seen survives
    with store.read() as s:
        assert {e.user_id for e in s.query(Event)} == {c}
