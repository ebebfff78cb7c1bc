"""A journey's numbers as an operator reads them: variants side by side with
their significance, events per entry, time buckets and readouts after a
send. Computed from ``engine.stats``' counts; no I/O here.

The significance test is a two-proportion z-test (pooled variance,
two-sided) written out with ``math.erf`` — enough for "is variant A's
conversion rate really different from the rest's?" at the sample sizes
operators have, and no scipy needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dsl.ir import Journey, SplitStep, iter_steps
from engine.stats import VariantStats

SIGNIFICANT_P = 0.05
SENT_STATUSES = ("sent", "pending")  # a pending send (WeCom awaiting staff) counts as sent


def two_proportion_z(c1: int, n1: int, c2: int, n2: int) -> tuple[float | None, float | None]:
    """(z, two-sided p) for H0: p1 == p2; (None, None) when undefined (an
    empty group, or both groups all-or-nothing so the pooled variance is 0)."""
    if n1 <= 0 or n2 <= 0:
        return None, None
    pooled = (c1 + c2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return None, None
    z = (c1 / n1 - c2 / n2) / se
    p = 1 - math.erf(abs(z) / math.sqrt(2))  # = 2 * (1 - Phi(|z|))
    return z, max(0.0, min(1.0, p))


@dataclass(frozen=True)
class Significance:
    against: str
    z: float | None
    p_value: float | None
    significant: bool


@dataclass(frozen=True)
class VariantRow:
    variant: str | None
    entered: int
    converted: int
    conversion_rate: float
    tests: list[Significance] = field(default_factory=list)


def _sig(against: str, c1: int, n1: int, c2: int, n2: int) -> Significance:
    z, p = two_proportion_z(c1, n1, c2, n2)
    return Significance(
        against=against,
        z=round(z, 4) if z is not None else None,
        p_value=round(p, 6) if p is not None else None,
        significant=p is not None and p < SIGNIFICANT_P,
    )


def holdout_variants(ir: Journey | None) -> set[str]:
    """The split variants the journey holds out (``Variant.holdout``, the
    parser's one definition of a holdout)."""
    if ir is None:
        return set()
    return {v.name for s in iter_steps(ir.steps) if isinstance(s, SplitStep) for v in s.variants if v.holdout}


def variant_rows(variants: Iterable[VariantStats], holdouts: set[str]) -> list[VariantRow]:
    """Each named variant against the pooled other variants, and against the
    holdout (one of ``holdouts``) when the split has one. Runs outside any
    split (variant null) are listed but not tested."""
    rows = list(variants)
    named = [v for v in rows if v.variant is not None]
    holdout = next((v for v in named if v.variant in holdouts), None)
    out: list[VariantRow] = []
    for v in rows:
        tests: list[Significance] = []
        if v.variant is not None and len(named) > 1:
            others = [o for o in named if o is not v]
            tests.append(
                _sig("rest", v.converted, v.entered, sum(o.converted for o in others), sum(o.entered for o in others))
            )
            if holdout is not None and holdout is not v:
                tests.append(_sig(holdout.variant or "", v.converted, v.entered, holdout.converted, holdout.entered))
        out.append(VariantRow(v.variant, v.entered, v.converted, round(v.conversion_rate, 6), tests))
    return out


def ratio(part: int, whole: int) -> float:
    """``part / whole`` to six places; 0 for an empty whole."""
    return round(part / whole, 6) if whole else 0.0


@dataclass(frozen=True)
class PerEntryVariant:
    variant: str | None
    entered: int
    events: int
    per_entry: float


@dataclass(frozen=True)
class PerEntry:
    event: str
    entered: int
    events: int
    per_entry: float
    variants: list[PerEntryVariant]


def per_entry(event: str, variants: list[VariantStats], counted: dict[str | None, int]) -> PerEntry:
    """``counted`` (``engine.stats.events_after_entry``) per entered user, per
    variant and in all: a referral's new users won per user reached."""
    rows = [
        PerEntryVariant(v.variant, v.entered, counted.get(v.variant, 0), ratio(counted.get(v.variant, 0), v.entered))
        for v in variants
    ]
    entered, events = sum(r.entered for r in rows), sum(r.events for r in rows)
    return PerEntry(event, entered, events, ratio(events, entered), rows)


@dataclass
class Bucket:
    start: datetime
    end: datetime
    entered: int = 0
    sent: int = 0
    suppressed: int = 0
    failed: int = 0
    converted: int = 0


def buckets(
    since: datetime,
    until: datetime,
    step: timedelta,
    entered: list[datetime],
    deliveries: list[tuple[datetime, str]],
    converted: list[datetime],
) -> list[Bucket]:
    """Entries, sends, suppressions, failures and conversions per ``step``
    from ``since`` to ``until`` (the last bucket may reach past it)."""
    count = max(1, math.ceil((until - since) / step))
    rows = [Bucket(since + i * step, since + (i + 1) * step) for i in range(count)]

    def index(at: datetime) -> int | None:
        i = int((at - since) // step)
        return i if 0 <= i < count else None

    for at in entered:
        if (i := index(at)) is not None:
            rows[i].entered += 1
    for at, status in deliveries:
        if (i := index(at)) is None:
            continue
        if status in SENT_STATUSES:
            rows[i].sent += 1
        elif status == "suppressed":
            rows[i].suppressed += 1
        elif status == "failed":
            rows[i].failed += 1
    for at in converted:
        if (i := index(at)) is not None:
            rows[i].converted += 1
    return rows


@dataclass(frozen=True)
class ReadoutVariant:
    variant: str | None
    entered: int
    sent: int
    converted: int
    conversion_rate: float


@dataclass(frozen=True)
class Readout:
    offset: str
    at: datetime
    complete: bool  # False while the readout time is still to come
    entered: int
    sent: int
    converted: int
    conversion_rate: float
    variants: list[ReadoutVariant] = field(default_factory=list)


def readouts(
    start: datetime,
    offsets: list[tuple[str, timedelta]],
    now: datetime,
    entered: list[tuple[datetime, str | None]],
    deliveries: list[tuple[datetime, str, str | None]],
    converted: list[tuple[datetime, str | None]],
) -> list[Readout]:
    """Cumulative numbers from ``start`` to each offset (the 3h/6h/12h readout
    of an SMS campaign): entries, sends, conversions and the conversion rate
    of the entered, in all and per split variant (each input carries the
    variant of its run; None outside any split)."""
    names = sorted(
        {v for _, v in entered} | {v for _, _, v in deliveries} | {v for _, v in converted},
        key=lambda v: (v is None, v or ""),
    )
    out = []
    for label, offset in offsets:
        at = start + offset
        n_entered = _by_variant(v for t, v in entered if start <= t < at)
        n_sent = _by_variant(v for t, s, v in deliveries if start <= t < at and s in SENT_STATUSES)
        n_conv = _by_variant(v for t, v in converted if start <= t < at)
        rows = [
            ReadoutVariant(
                v, n_entered.get(v, 0), n_sent.get(v, 0), n_conv.get(v, 0), ratio(n_conv.get(v, 0), n_entered.get(v, 0))
            )
            for v in names
        ]
        total_entered, total_conv = sum(n_entered.values()), sum(n_conv.values())
        out.append(
            Readout(
                label,
                at,
                at <= now,
                total_entered,
                sum(n_sent.values()),
                total_conv,
                ratio(total_conv, total_entered),
                rows,
            )
        )
    return out


def _by_variant(variants: Iterable[str | None]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for v in variants:
        out[v] = out.get(v, 0) + 1
    return out
