"""Numbers for the stats route and the live diagram.

Store counts (``engine.stats``) say what happened; Temporal visibility says
who is waiting where right now. The significance test is a two-proportion
z-test (pooled variance, two-sided) written out with ``math.erf`` — enough
for "is variant A's conversion rate really different from the rest's?" at
the sample sizes operators have, and no scipy needed.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from temporalio.client import Client

from api.runs import waiting_counts
from api.schemas import BucketOut, NodeStatsOut, ReadoutOut, Significance, VariantOut
from dsl.ir import Journey, iter_steps
from dsl.render import END_ID, ENTRY_ID
from engine.stats import NodeStats, VariantStats

log = logging.getLogger("journeys.api")

WAITING_KINDS = {"wait", "wait_until", "wait_date", "wait_event", "send"}
HOLDOUT_NAMES = {"holdout", "control"}
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
MAX_DURATION_S = 366 * 86400
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``30m``, ``1h``, ``12h``, ``2d``, ``1w``."""
    m = _DURATION.match(text)
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration like 30m, 1h, 12h or 2d")
    seconds = int(m.group(1)) * _UNIT[m.group(2)]
    if seconds > MAX_DURATION_S:
        raise ValueError(f"{text!r} is longer than a year")
    return timedelta(seconds=seconds)


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


def _sig(against: str, c1: int, n1: int, c2: int, n2: int) -> Significance:
    z, p = two_proportion_z(c1, n1, c2, n2)
    return Significance(
        against=against,
        z=round(z, 4) if z is not None else None,
        p_value=round(p, 6) if p is not None else None,
        significant=p is not None and p < 0.05,
    )


def variant_rows(variants: Iterable[VariantStats]) -> list[VariantOut]:
    """Each named variant against the pooled other variants, and against the
    holdout when the split has one. Runs outside any split (variant null)
    are listed but not tested."""
    rows = list(variants)
    named = [v for v in rows if v.variant is not None]
    holdout = next((v for v in named if v.variant.lower() in HOLDOUT_NAMES), None)
    out: list[VariantOut] = []
    for v in rows:
        tests: list[Significance] = []
        if v.variant is not None and len(named) > 1:
            others = [o for o in named if o is not v]
            tests.append(
                _sig("rest", v.converted, v.entered, sum(o.converted for o in others), sum(o.entered for o in others))
            )
            if holdout is not None and holdout is not v:
                tests.append(
                    _sig(holdout.variant or "holdout", v.converted, v.entered, holdout.converted, holdout.entered)
                )
        out.append(
            VariantOut(
                variant=v.variant,
                entered=v.entered,
                converted=v.converted,
                conversion_rate=round(v.conversion_rate, 6),
                tests=tests,
            )
        )
    return out


def waiting_nodes(ir: Journey) -> list[str]:
    return [s.id for s in iter_steps(ir.steps) if s.id and s.kind in WAITING_KINDS]


async def live_waiting(
    client: Client | None, journey_id: str, ir: Journey, version: int | None
) -> tuple[dict[str, int] | None, str | None]:
    if client is None:
        return None, "Temporal is not connected: waiting counts unavailable"
    try:
        return await waiting_counts(client, journey_id, waiting_nodes(ir), version), None
    except Exception as exc:  # noqa: BLE001 - stats still answer from the store
        log.warning("visibility count failed for %s: %s", journey_id, exc)
        return None, "Temporal visibility query failed: waiting counts unavailable"


def node_rows(ir: Journey, counts: dict[str, NodeStats], waiting: dict[str, int] | None) -> list[NodeStatsOut]:
    order = ["entry", *[s.id for s in iter_steps(ir.steps) if s.id], "end"]
    ids = list(dict.fromkeys(order + sorted(counts)))
    rows = []
    for node_id in ids:
        c = counts.get(node_id) or NodeStats(node_id=node_id)
        rows.append(
            NodeStatsOut(
                node_id=node_id,
                entered=c.entered,
                passed=c.passed,
                waiting=(waiting.get(node_id, 0) if waiting is not None else None),
                waited=c.waiting,
                sent=c.sent,
                pending=c.pending,
                suppressed=c.suppressed,
                failed=c.failed,
                outcomes=dict(c.outcomes),
            )
        )
    return rows


def diagram_counts(rows: list[NodeStatsOut]) -> dict[str, dict[str, int]]:
    """Node rows in the shape ``dsl.render.to_svg`` draws as badges."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        key = ENTRY_ID if r.node_id == "entry" else END_ID if r.node_id == "end" else r.node_id
        values = {
            "entered": r.entered,
            "waiting": r.waiting or 0,
            "sent": r.sent,
            "suppressed": r.suppressed,
            "failed": r.failed,
        }
        out[key] = {k: v for k, v in values.items() if v}
    return out


def buckets(
    since: datetime,
    until: datetime,
    step: timedelta,
    entered: list[datetime],
    deliveries: list[tuple[datetime, str]],
    converted: list[datetime],
) -> list[BucketOut]:
    count = max(1, math.ceil((until - since) / step))
    rows = [
        BucketOut(
            start=since + i * step, end=since + (i + 1) * step, entered=0, sent=0, suppressed=0, failed=0, converted=0
        )
        for i in range(count)
    ]

    def index(at: datetime) -> int | None:
        i = int((at - since) // step)
        return i if 0 <= i < count else None

    for at in entered:
        if (i := index(at)) is not None:
            rows[i].entered += 1
    for at, status in deliveries:
        if (i := index(at)) is None:
            continue
        if status in ("sent", "pending"):
            rows[i].sent += 1
        elif status == "suppressed":
            rows[i].suppressed += 1
        elif status == "failed":
            rows[i].failed += 1
    for at in converted:
        if (i := index(at)) is not None:
            rows[i].converted += 1
    return rows


def readouts(
    start: datetime,
    offsets: list[tuple[str, timedelta]],
    now: datetime,
    entered: list[datetime],
    deliveries: list[tuple[datetime, str]],
    converted: list[datetime],
) -> list[ReadoutOut]:
    """Cumulative numbers from ``start`` to each offset (the 3h/6h/12h readout
    of an SMS campaign): sends, conversions, conversion rate of the entered."""
    out = []
    for label, offset in offsets:
        at = start + offset
        n_entered = sum(1 for t in entered if start <= t < at)
        n_sent = sum(1 for t, s in deliveries if start <= t < at and s in ("sent", "pending"))
        n_conv = sum(1 for t in converted if start <= t < at)
        out.append(
            ReadoutOut(
                offset=label,
                at=at,
                complete=at <= now,
                entered=n_entered,
                sent=n_sent,
                converted=n_conv,
                conversion_rate=round(n_conv / n_entered, 6) if n_entered else 0.0,
            )
        )
    return out
