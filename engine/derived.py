"""Derived tags: lifecycle stage and RFM layer, computed from a user's events.

Operators run one workflow per stage (new → active → silent → churned, and
paying) and pick reactivation sequences by RFM layer. Both depend on time as
well as on events (a user becomes silent by doing nothing), so they are
computed *relative to a given now*: at ingestion (stored on the user and as
``stage:<x>`` / ``rfm:<y>`` tags with source ``derived``, for audiences and
listings) and again at each ``user_snapshot`` against the workflow's time, so a
condition never reads a stale stage.

Rules (``DerivedRules``, all thresholds configurable), first match wins:

- ``paying``: a payment event within ``paying_days``;
- ``new``: first seen within ``new_days`` and never paid;
- ``active``: any event within ``active_days``;
- ``silent``: the last sign of life is older than that but within ``churned_days``;
- ``churned``: nothing for longer.

RFM over the last ``rfm_window_days`` of payments: R high when the last payment
is within ``rfm_recency_days``, F high with at least ``rfm_frequency`` payments,
M high when amounts add up to ``rfm_monetary``. Layer ``high`` = all three,
``mid`` = one or two, ``low`` = none; users who never paid have no layer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import Session

from dsl import Profiles
from dsl.ir import RFM_LAYERS
from engine.settings import DerivedRules
from engine.store.models import MAX_PAYMENT_MARK, Event, User
from engine.store.types import utc
from engine.tags import replace_prefixes

DERIVED_SOURCE = "derived"

_USERS = User.__table__
_EVENTS = Event.__table__
_USER_ROW = select(
    _USERS.c.created_at,
    _USERS.c.stage,
    _USERS.c.rfm,
    _USERS.c.first_event_at,
    _USERS.c.last_event_at,
    _USERS.c.last_payment_at,
    _USERS.c.payment_events,
).where(_USERS.c.id == bindparam("uid"))
_SET_DERIVED = (
    update(_USERS)
    .where(_USERS.c.id == bindparam("uid"))
    .values(
        stage=bindparam("new_stage"),
        rfm=bindparam("new_rfm"),
        first_event_at=bindparam("new_first"),
        last_event_at=bindparam("new_last"),
        last_payment_at=bindparam("new_last_payment"),
        payment_events=bindparam("new_mark"),
    )
)


@lru_cache(maxsize=8)
def _mark(names: tuple[str, ...]) -> str | None:
    text = json.dumps(sorted(set(names)), ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= MAX_PAYMENT_MARK else None


def payment_mark(payment_events: list[str] | tuple[str, ...]) -> str | None:
    """What ``users.payment_events`` says when ``users.last_payment_at`` was
    taken with these payment event names: their sorted JSON list, so a store
    whose configured names change reads its kept values as not kept (an
    audience then aggregates the payments) until each is retaken. None when
    the list is too long to keep (``MAX_PAYMENT_MARK``): never kept then."""
    return _mark(tuple(payment_events))


@lru_cache(maxsize=8)
def _fact_queries(payment_events: tuple[str, ...]) -> tuple[Any, Any]:
    """(first/last event and last payment, payments since a time) for one set
    of payment event names, built once: every ingested event asks."""
    is_payment = _EVENTS.c.name.in_(payment_events)
    mine = _EVENTS.c.user_id == bindparam("uid")
    spans = select(
        func.min(_EVENTS.c.occurred_at),
        func.max(_EVENTS.c.occurred_at),
        func.max(case((is_payment, _EVENTS.c.occurred_at), else_=None)),
    ).where(mine)
    payments = select(_EVENTS.c.properties).where(mine, is_payment, _EVENTS.c.occurred_at > bindparam("since"))
    return spans, payments


@dataclass(frozen=True)
class UserFacts:
    """The aggregates the rules look at."""

    first_seen: datetime
    last_event_at: datetime | None
    last_payment_at: datetime | None
    payments_in_window: int
    monetary_in_window: float


@dataclass(frozen=True)
class Derived:
    stage: str
    rfm: str | None
    rfm_code: str | None  # e.g. "R1F0M1", for listings


def compute(facts: UserFacts, now: datetime, rules: DerivedRules) -> Derived:
    """Pure rule evaluation (unit-testable without a database)."""
    now = utc(now)

    def within(at: datetime | None, days: int) -> bool:
        return at is not None and now - at <= timedelta(days=days)

    last_sign = facts.last_event_at or facts.first_seen
    if within(facts.last_payment_at, rules.paying_days):
        stage = "paying"
    elif facts.last_payment_at is None and within(facts.first_seen, rules.new_days):
        stage = "new"
    elif within(facts.last_event_at, rules.active_days):
        stage = "active"
    elif within(last_sign, rules.churned_days):
        stage = "silent"
    else:
        stage = "churned"

    if facts.last_payment_at is None:
        return Derived(stage=stage, rfm=None, rfm_code=None)
    r = within(facts.last_payment_at, rules.rfm_recency_days)
    f = facts.payments_in_window >= rules.rfm_frequency
    m = facts.monetary_in_window >= rules.rfm_monetary
    score = int(r) + int(f) + int(m)
    layer = "high" if score == 3 else "mid" if score >= 1 else "low"
    return Derived(stage=stage, rfm=layer, rfm_code=f"R{int(r)}F{int(f)}M{int(m)}")


_LATER_STAGES = ("active", "silent", "churned")  # neither new nor paying: never paid, or not for paying_days


def profiles(rules: DerivedRules) -> Profiles:
    """The (stage, RFM layer) pairs :func:`compute` can give at one moment
    under ``rules``, for the checker's W309, and why the others cannot
    occur. F and M are taken as free (either value possible), so the set
    is a superset: the checker then warns only about pairs that truly
    never occur. What decides is R against the stage: a payment within
    ``paying_days`` makes the stage ``paying``, and R is high for a payment
    within ``rfm_recency_days``."""
    paying, recency = rules.paying_days, rules.rfm_recency_days
    # paying: paid at most paying_days ago; R is high unless that can be longer ago than recency
    paying_layers = {"high", "mid"} | ({"low"} if paying > recency else set())
    # the other stages' payments (if any) are older than paying_days: R is high only if recency is longer
    older_layers = {"mid", "low"} | ({"high"} if recency > paying else set())
    possible = {("new", None)} | {("paying", layer) for layer in paying_layers}
    possible |= {(stage, layer) for stage in _LATER_STAGES for layer in (*older_layers, None)}
    why = [("A new user has never paid, so has no RFM layer.", frozenset(("new", layer) for layer in RFM_LAYERS))]
    if paying <= recency:
        paid = f"A paying user paid within {paying} days, so R is high and the layer is high or mid."
        why.append((paid, frozenset({("paying", None), ("paying", "low")})))
    else:
        why.append((f"A paying user paid within {paying} days, so has an RFM layer.", frozenset({("paying", None)})))
    if recency <= paying:
        sentence = (
            f"R is high only with a payment within {recency} days, which makes the stage paying: "
            "a user of any other stage is never RFM high."
        )
        why.append((sentence, frozenset((stage, "high") for stage in _LATER_STAGES)))
    return Profiles(frozenset(possible), tuple(why))


def user_facts(session: Session, user_id: str, now: datetime, rules: DerivedRules) -> UserFacts | None:
    row = session.execute(_USER_ROW, {"uid": user_id}).first()
    return _facts(session, user_id, row.created_at, now, rules) if row is not None else None


@dataclass(frozen=True)
class _Spans:
    first_event: datetime | None
    last_event: datetime | None
    last_payment: datetime | None


def _spans(session: Session, user_id: str, rules: DerivedRules) -> _Spans:
    spans, _ = _fact_queries(tuple(rules.payment_events))
    first_event, last_event, last_payment = session.execute(spans, {"uid": user_id}).one()
    return _Spans(
        first_event=utc(first_event) if first_event else None,
        last_event=utc(last_event) if last_event else None,
        last_payment=utc(last_payment) if last_payment else None,
    )


def _facts(
    session: Session,
    user_id: str,
    created_at: datetime,
    now: datetime,
    rules: DerivedRules,
    spans: _Spans | None = None,
) -> UserFacts:
    now = utc(now)
    _, payments_since = _fact_queries(tuple(rules.payment_events))
    spans = spans or _spans(session, user_id, rules)
    first_event, last_event, last_payment = spans.first_event, spans.last_event, spans.last_payment
    window_start = now - timedelta(days=rules.rfm_window_days)
    payments: list = []
    if last_payment is not None and utc(last_payment) > window_start:  # else none can be in the window
        payments = session.execute(payments_since, {"uid": user_id, "since": window_start}).all()
    monetary = sum(_amount(props, rules.amount_property) for (props,) in payments)
    created_at = utc(created_at)
    first_seen = min(created_at, first_event) if first_event else created_at
    return UserFacts(
        first_seen=first_seen,
        last_event_at=last_event,
        last_payment_at=last_payment,
        payments_in_window=len(payments),
        monetary_in_window=monetary,
    )


def derive(session: Session, user_id: str, now: datetime, rules: DerivedRules) -> Derived | None:
    facts = user_facts(session, user_id, now, rules)
    return compute(facts, now, rules) if facts else None


def refresh_user(session: Session, user_id: str, *, now: datetime, rules: DerivedRules) -> Derived | None:
    """Recompute and store the user's stage and RFM layer (column + tags) and
    the event times they came from (``users.first_event_at`` /
    ``last_event_at`` / ``last_payment_at``, which audiences read)."""
    user = session.execute(_USER_ROW, {"uid": user_id}).first()
    if user is None:
        return None
    spans = _spans(session, user_id, rules)
    result = compute(_facts(session, user_id, user.created_at, now, rules, spans), now, rules)
    mark = payment_mark(rules.payment_events)
    kept = (
        user.stage,
        user.rfm,
        *(utc(at) if at else None for at in (user.first_event_at, user.last_event_at, user.last_payment_at)),
        user.payment_events,
    )
    last_payment = spans.last_payment if mark is not None else None
    fresh = (result.stage, result.rfm, spans.first_event, spans.last_event, last_payment, mark)
    if kept != fresh:
        session.execute(
            _SET_DERIVED,
            {
                "uid": user_id,
                "new_stage": result.stage,
                "new_rfm": result.rfm,
                "new_first": spans.first_event,
                "new_last": spans.last_event,
                "new_last_payment": last_payment,
                "new_mark": mark,
            },
        )
    replace_prefixes(
        session,
        user_id,
        {"stage:": f"stage:{result.stage}", "rfm:": f"rfm:{result.rfm}" if result.rfm else None},
        source=DERIVED_SOURCE,
        now=now,
    )
    return result


def _amount(props: object, key: str) -> float:
    if not isinstance(props, dict):
        return 0.0
    try:
        return float(props.get(key) or 0)
    except (TypeError, ValueError):
        return 0.0


def store_event_spans(session: Session, user_ids: list[str] | None = None, rules: DerivedRules | None = None) -> None:
    """Set ``users.first_event_at`` / ``last_event_at`` and the last payment
    (``last_payment_at``, marked with ``rules``' payment names) from the
    events, for ``user_ids`` (all users when ``None``): for rows written
    around :func:`refresh_user` (a bulk load, a repair, a change of the
    payment names). ``updated_at`` is kept."""
    rules = rules or DerivedRules()
    mark = payment_mark(rules.payment_events)
    ev = _EVENTS
    paid = ev.c.name.in_(sorted(set(rules.payment_events)))
    keep = {"updated_at": _USERS.c.updated_at}
    if user_ids is None and session.get_bind().dialect.name == "postgresql":
        # One grouped pass and a hash join: at a million users far cheaper
        # than three index probes per user.
        spans = (
            select(
                ev.c.user_id,
                func.min(ev.c.occurred_at).label("first"),
                func.max(ev.c.occurred_at).label("last"),
                func.max(case((paid, ev.c.occurred_at), else_=None)).label("paid"),
            )
            .group_by(ev.c.user_id)
            .subquery()
        )
        session.execute(
            update(_USERS)
            .where(_USERS.c.id == spans.c.user_id)
            .values(
                first_event_at=spans.c.first,
                last_event_at=spans.c.last,
                last_payment_at=spans.c.paid if mark is not None else None,
                payment_events=mark,
                **keep,
            )
        )
        # users without events: nothing paid, and that is kept too
        no_events = ~select(ev.c.id).where(ev.c.user_id == _USERS.c.id).exists()
        session.execute(update(_USERS).where(no_events).values(last_payment_at=None, payment_events=mark, **keep))
        return
    mine = ev.c.user_id == _USERS.c.id
    values = {
        "first_event_at": select(func.min(ev.c.occurred_at)).where(mine).scalar_subquery(),
        "last_event_at": select(func.max(ev.c.occurred_at)).where(mine).scalar_subquery(),
        "last_payment_at": select(func.max(ev.c.occurred_at)).where(mine, paid).scalar_subquery()
        if mark is not None
        else None,
        "payment_events": mark,
        **keep,
    }
    if user_ids is None:
        session.execute(update(_USERS).values(**values))
        return
    for i in range(0, len(user_ids), 500):
        session.execute(update(_USERS).where(_USERS.c.id.in_(user_ids[i : i + 500])).values(**values))
