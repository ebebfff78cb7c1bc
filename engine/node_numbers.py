"""Numbers on every node of a journey: what the store counted
(``engine.stats.node_counts``) beside who waits there now (Temporal
visibility), in the IR's order, and as the diagram's badges."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from temporalio.client import Client

from dsl.ir import Journey, iter_steps
from dsl.render import END_ID, ENTRY_ID
from engine.count_cache import COUNTS, Counting
from engine.shelf import Shelf
from engine.stats import NodeStats, first_wait, shelf_name
from engine.store import Store
from engine.visibility import waiting_counts

log = logging.getLogger("journeys.stats")


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    entered: int
    passed: int
    waiting: int | None  # runs waiting here now (visibility); None when unknown
    waited: int  # runs that ever waited here (store)
    sent: int
    pending: int
    suppressed: int
    failed: int
    retrying: int = 0  # sends whose last attempt failed, being retried now
    outcomes: dict[str, int] = field(default_factory=dict)


def waiting_nodes(ir: Journey) -> list[str]:
    """The steps a run can rest at (the IR's ``waits``), the ones worth a
    visibility count."""
    return [s.id for s in iter_steps(ir.steps) if s.id and (s.waits or getattr(s, "test", None) is not None)]


async def live_waiting(
    client: Client | None,
    journey_id: str,
    ir: Journey,
    version: int | None,
    stored: dict[str, NodeStats] | None = None,
    store: Store | None = None,
    *,
    quick: bool = False,
    begin_only: bool = False,
) -> tuple[dict[str, int] | None, str | None]:
    """Waiting counts per node, or (None, why not): the store's numbers still
    answer without Temporal.

    With the store's counts (``stored``: pass them only when counted for
    this answer, ``stats.if_fresh``; a kept count can be
    minutes behind the first runs to wait somewhere), only nodes where some
    run ever waited are asked: a run records "waiting" at a node in the
    workflow task that upserts it there (``workflows.waits``), before
    visibility shows it (unless that record's write outlasts the workflow
    task's timeout: a moment's undercount). Each count reads every running
    run of the journey (63 ms at 10k): a send-wait-send journey's stats
    asked three where one can be non-zero. With ``store``, a kept count is
    on its shelf too (``engine.shelf``), for the other API processes; and
    ``quick`` waits for a big journey's first count only ``FIRST_WAIT``
    seconds (then None and why: the count goes on in the background);
    with ``begin_only`` too, not at all (a 503 "counting" begins it)."""
    if client is None:
        return None, "Temporal is not connected: waiting counts unavailable"
    nodes = _asked(ir, stored)
    if not nodes:
        return {}, None
    try:
        counted = await COUNTS.aget(
            _waiting_key(client, journey_id, version, nodes),
            lambda: waiting_counts(client, journey_id, nodes, version),
            shelf=_waiting_shelf(store, journey_id, version, nodes),
            wait=_first_wait(store, journey_id, begin_only) if quick and store is not None else None,
        )
        return counted, None
    except Counting as counting:
        return None, f"counting who waits where for the first time ({counting.seconds:.0f} s so far): shown once done"
    except Exception as exc:  # noqa: BLE001 - stats still answer from the store
        log.warning("visibility count failed for %s: %s", journey_id, exc)
        return None, "Temporal visibility query failed: waiting counts unavailable"


def _asked(ir: Journey, stored: dict[str, NodeStats] | None) -> list[str]:
    nodes = waiting_nodes(ir)
    if stored is None:
        return nodes
    return [n for n in nodes if (found := stored.get(n)) is not None and found.waiting > 0]


def _first_wait(store: Store, journey_id: str, begin_only: bool) -> Callable[[], Awaitable[float | None]]:
    async def wait() -> float | None:
        seconds = await asyncio.to_thread(first_wait, store, journey_id)
        return 0.0 if begin_only and seconds is not None else seconds

    return wait


def _waiting_shelf(
    store: Store | None, journey_id: str, version: int | None, nodes: list[str]
) -> Shelf[dict[str, int]] | None:
    if store is None:
        return None
    name = shelf_name("waiting", journey_id, version, *nodes)
    return Shelf(store, journey_id, name, dict, lambda found: {node: int(n) for node, n in found.items()})


def _waiting_key(client: Client, journey_id: str, version: int | None, nodes: list[str]) -> tuple[object, ...]:
    return ("waiting", id(client), journey_id, version, tuple(nodes))


def waiting_age(
    client: Client | None,
    journey_id: str,
    ir: Journey,
    version: int | None,
    stored: dict[str, NodeStats] | None = None,
) -> float | None:
    """Seconds since the waiting counts ``live_waiting`` serves were taken;
    None while they are counted for each answer (or there is no Temporal)."""
    if client is None:
        return None
    return COUNTS.age(_waiting_key(client, journey_id, version, _asked(ir, stored)))


def node_rows(ir: Journey, counts: dict[str, NodeStats], waiting: dict[str, int] | None) -> list[NodeRow]:
    """Entry, every step in document order, end, then any node the store
    knows that this version does not have (from another version)."""
    order = ["entry", *[s.id for s in iter_steps(ir.steps) if s.id], "end"]
    rows = []
    for node_id in dict.fromkeys(order + sorted(counts)):
        c = counts.get(node_id) or NodeStats(node_id=node_id)
        rows.append(
            NodeRow(
                node_id=node_id,
                entered=c.entered,
                passed=c.passed,
                waiting=(waiting.get(node_id, 0) if waiting is not None else None),
                waited=c.waiting,
                sent=c.sent,
                pending=c.pending,
                suppressed=c.suppressed,
                failed=c.failed,
                retrying=c.retrying,
                outcomes=dict(c.outcomes),
            )
        )
    return rows


def diagram_counts(rows: list[NodeRow]) -> dict[str, dict[str, int]]:
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
