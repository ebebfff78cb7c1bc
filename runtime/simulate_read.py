"""A simulated case read back: the engine's timeline of the user (steps,
sends, coupons), the outbox's rendered messages, the scripted events, in
the operator's words (the step words of ``dsl.render_text``), with how many
times each node was reached and how the run ended.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select

from dsl.durations import format_duration
from dsl.graph import build_graph
from dsl.ir import EventEntry, IfStep, Journey, Step
from dsl.render_text import describe_cond, describe_entry, describe_step
from engine import goals, identity
from engine.channels.outbox import Outbox
from engine.queries import user_profile, user_runs
from engine.store import Store
from engine.store.models import Run
from engine.timeline import TimelineItem, user_timeline
from runtime.simulate_model import Case, CaseResult, Entry, Message, parse_moment
from workflows.localtime import zone

TIMELINE_LIMIT = 20_000
PSEUDO_NODES = ("entry", "goal", "end")


def offset_text(seconds: int) -> str:
    """``+0s``, ``+5m``, ``+1d2h``: the offset from the start, to the minute
    (``--json`` keeps the exact instants). The test server's clock also
    runs in real time between skips, so the run's work lands a little after
    the moment it was due: 1-3 s after the start for a test file's cases on
    a loaded machine, and every later step of the case with it. Down to the
    minute that never shows, and the language's waits and quiet hours are
    minutes and more."""
    seconds = max(seconds, 0)
    return "+" + format_duration(seconds - seconds % 60)


def _goal_met(store: Store, journey_id: str, user_id: str) -> bool:
    """The goal as the journey's numbers judge it (``engine.goals``: the
    goal event within its window after entry, from the stored events), so a
    run that ended before the user bought still converts — as in the stats."""
    attribution = goals.attribute(store, journey_id)
    if not attribution.conversions:
        return False
    with store.read() as s:
        uid = identity.canonical_user_id(s, user_id) or user_id
        mine = set(s.scalars(select(Run.id).where(Run.journey_id == journey_id, Run.user_id == uid)))
    return any(c.run_id in mine for c in attribution.conversions)


def read_case(
    store: Store,
    outbox: Outbox,
    ir: Journey,
    case: Case,
    journey_id: str,
    user_id: str,
    start: datetime,
    end: datetime,
    waiting_at: str | None,
    *,
    not_selected: str | None = None,
) -> CaseResult:
    """``not_selected``: why an audience entry did not select the test user
    (the case is then "not entered" with that reason)."""
    graph = build_graph(ir)
    items = user_timeline(store, user_id, journey_id=journey_id, limit=TIMELINE_LIMIT)
    steps = [i for i in items if i.kind == "step"]  # one per (run, seq): engine.runs.add_steps
    entries = [_step_entry(graph.nodes, ir, item, start) for item in steps]
    entries = [e for e in entries if e is not None]
    entries += [
        _event_entry(event.name, event.properties, parse_moment(event.at, start), start) for event in case.events
    ]
    messages = _messages(items, outbox)
    _attach_bodies(entries, messages)
    entries.sort(key=lambda e: (e.at, _KIND_ORDER.get(e.kind, 1)))
    profile = user_profile(store, user_id)
    runs = user_runs(store, user_id)
    run = next((r for r in runs if r.journey_id == journey_id), None)
    ended, reason = _ending(run, waiting_at, isinstance(ir.entry, EventEntry))
    if run is None and not_selected is not None:
        reason = not_selected
    converted = (
        any(i.node_id == "goal" and i.status == "converted" for i in steps)
        or ended == "converted"
        or (ir.goal is not None and _goal_met(store, journey_id, user_id))
    )
    coupons: dict[str, list[str]] = defaultdict(list)
    for item in items:
        if item.kind == "coupon":
            coupons[str(item.detail.get("pool"))].append(str(item.detail.get("code")))
    visits, outcomes = _visits(steps)
    return CaseResult(
        name=case.name,
        user_id=user_id,
        timezone=str(_zone_of(case, ir)),
        start=start,
        horizon=end,
        timeline=entries,
        messages=messages,
        visits=visits,
        outcomes=outcomes,
        ended=ended,
        end_reason=reason,
        waiting_at=waiting_at,
        converted=converted,
        tags=sorted(t.tag for t in profile.tags if not t.tag.startswith(("stage:", "rfm:"))) if profile else [],
        coupons=dict(coupons),
    )


_KIND_ORDER = {"event": 0, "step": 1}


def _attach_bodies(entries: list[Entry], messages: list[Message]) -> None:
    """The rendered text of each message that went out, on the send step's
    line (the n-th sent record of a node gets its n-th message)."""
    sent: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        if message.body is not None:
            sent[str(message.node_id)].append(message)
    for entry in entries:
        if entry.kind == "step" and entry.outcome == "sent" and sent.get(str(entry.node_id)):
            message = sent[str(entry.node_id)].pop(0)
            entry.detail["body"] = message.body
            entry.detail["template"] = message.template


def _zone_of(case: Case, ir: Journey) -> Any:
    return zone(case.user.timezone or (case.user.attributes or {}).get("timezone"), ir.timezone)


def _entry(
    at: datetime, start: datetime, node: str | None, kind: str, outcome: str | None, text: str, **detail: Any
) -> Entry:
    return Entry(
        at=at,
        offset_seconds=int((at - start).total_seconds()),
        node_id=node,
        kind=kind,
        outcome=outcome,
        text=text,
        detail={k: v for k, v in detail.items() if v is not None},
    )


def _event_entry(name: str, properties: dict[str, Any], at: datetime, start: datetime) -> Entry:
    shown = ", ".join(f"{k}: {v}" for k, v in properties.items())
    return _entry(at, start, None, "event", None, f"event {name}" + (f" {{{shown}}}" if shown else ""))


def _step_entry(nodes: dict[str, Step], ir: Journey, item: TimelineItem, start: datetime) -> Entry | None:
    node, outcome, detail = item.node_id, item.status or "", item.detail
    at = item.at if item.at.tzinfo else item.at.replace(tzinfo=start.tzinfo)
    extra = {k: detail.get(k) for k in ("channel", "reason", "code", "variant", "until", "forced")}
    if node == "entry":
        text = f"enter {describe_entry(ir.entry)}" if outcome == "entered" else f"enter: {outcome}"
        return _entry(at, start, node, "step", outcome, text, **extra)
    if node == "goal":
        return _entry(at, start, node, "step", outcome, f"goal {ir.goal.event if ir.goal else ''} reached → converts")
    if node == "end":
        why = f" ({detail['reason']})" if detail.get("reason") else ""
        return _entry(at, start, node, "step", outcome, f"end: {outcome}{why}")
    step = nodes.get(node or "")
    if step is not None and step.kind == "send" and outcome == "waiting":
        return None  # the sleep of a send held for quiet hours: its "deferred" record says so
    words = describe_step(step) if step is not None else str(node)
    return _entry(at, start, node, "step", outcome, _outcome_words(step, words, outcome, detail), **extra)


def _outcome_words(step: Step | None, words: str, outcome: str, detail: dict[str, Any]) -> str:
    if outcome == "waiting":
        return words
    if outcome == "deferred":
        return f"{words} → held for {detail.get('reason', 'quiet hours')}"
    if outcome.startswith("branch:") and isinstance(step, IfStep):
        index = int(outcome.split(":", 1)[1])
        if len(step.branches) == 1:
            return f"{words} → yes"
        return f"{words} → {describe_cond(step.branches[index].cond)}"
    if outcome == "else" and isinstance(step, IfStep):
        return f"{words} → {'no' if len(step.branches) == 1 and step.else_steps is None else 'else'}"
    if outcome in ("event", "timeout"):
        return f"{words} → on {outcome}"
    if outcome.startswith("variant:"):
        forced = " (forced)" if detail.get("forced") else ""
        return f"{words} → variant {outcome.split(':', 1)[1]}{forced}"
    if step is not None and step.kind == "send":
        via = f" via {detail['channel']}" if detail.get("channel") and outcome == "sent" else ""
        why = f" ({detail['reason']})" if detail.get("reason") and outcome != "sent" else ""
        return f"{words} → {outcome}{via}{why}"
    if step is not None and step.kind == "coupon":
        why = f" ({detail['reason']})" if detail.get("reason") else ""
        return f"{words} → {outcome.replace('_', ' ')}{why}"
    if outcome in ("passed", "add", "remove", "next"):
        return words
    return f"{words} → {outcome.replace('_', ' ')}"


def _messages(items: list[TimelineItem], outbox: Outbox) -> list[Message]:
    """Every send the ledger recorded, with the outbox's rendered text for
    those that went out (matched per node, in order)."""
    bodies: dict[str, list[str]] = defaultdict(list)
    for record in outbox.records:
        message = record["message"]
        bodies[str((message.get("data") or {}).get("node_id"))].append(message.get("body") or "")
    taken: dict[str, int] = defaultdict(int)
    out = []
    for item in items:
        if item.kind != "delivery":
            continue
        node = str(item.node_id)
        body = None
        if item.status == "sent" and taken[node] < len(bodies[node]):
            body = bodies[node][taken[node]]
            taken[node] += 1
        template = item.summary.split(" · ", 1)[-1].rsplit(":", 1)[0] if " · " in item.summary else None
        out.append(
            Message(
                at=item.at,
                node_id=item.node_id,
                channel=item.detail.get("channel"),
                template=template,
                status=item.status or "",
                reason=item.reason,
                body=body,
            )
        )
    return out


def _visits(steps: list[TimelineItem]) -> tuple[dict[str, int], dict[str, list[str]]]:
    """Times each node was reached: consecutive records of one node are one
    visit (a send held for quiet hours writes two, a wait for an event
    two), the goal's record, which can come in the middle of a wait, aside."""
    visits: dict[str, int] = defaultdict(int)
    outcomes: dict[str, list[str]] = defaultdict(list)
    previous: str | None = None
    for item in steps:
        node = item.node_id or ""
        if node in PSEUDO_NODES:
            if node != "goal":
                previous = node
            continue
        if node != previous:
            visits[node] += 1
        previous = node
        if item.status and item.status not in ("waiting", "deferred"):
            outcomes[node].append(item.status)
    return dict(visits), dict(outcomes)


def _ending(run: Any, waiting_at: str | None, event_entry: bool) -> tuple[str, str | None]:
    if waiting_at is not None:
        return "running", f"still waiting at {waiting_at}"
    if run is None:
        return "not entered", "the entry event did not match" if event_entry else "never started"
    if not run.admitted:
        return "refused", run.reason
    return run.outcome or "running", run.end_reason
