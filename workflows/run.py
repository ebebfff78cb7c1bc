"""``Run``: what one execution of ``JourneyWorkflow`` holds in memory.

``RunState`` (``contracts.runs``) is the part that survives continue-as-new;
the rest (events seen in this execution, step records not yet written, where
the run is waiting) lives and dies with the execution. Every other module of
the interpreter is functions of a ``Run``, so each one's job is readable on
its own and none hides state from the others.

This module must stay free of side effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from contracts.activities import StepRecord
from contracts.runs import JourneyInput, RunState, UserEvent
from dsl.graph import Graph, build_graph
from dsl.ir import WaitEventStep
from workflows.patches import taken


@dataclass
class Run:
    """One execution's input, journey graph, carried state and buffers."""

    inp: JourneyInput
    graph: Graph
    # None until ``begin_run`` lets the user in (a continuation brings its own).
    state: RunState | None
    seen: set[str]  # event ids handled, to drop redeliveries (from RunState.seen_event_ids)
    # Runs before the buffered-events revision: events since this execution
    # started, and from ``cursor`` on, those new to the next ``wait for event``
    # (the buffered revision keeps them in ``RunState.unconsumed_events``).
    arrivals: list[UserEvent] = field(default_factory=list)
    cursor: int = 0
    exit_reason: str | None = None
    goal_pending: list[UserEvent] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    waiting: str | None = None  # node id of the wait the run sleeps in
    steps_run: int = 0
    early_events: list[UserEvent] = field(default_factory=list)  # arrived before the run registered
    # Which revision this execution follows, decided by its first commands.
    local_effects: bool = False
    buffers_events: bool = False
    live_signals: bool = False
    # A tag change arrived since the user was last read, and an exit rule on
    # the user may now hold (runs on the live-signals revision).
    tags_changed: bool = False
    # The events some ``wait for event`` of the journey waits for: the only
    # ones worth keeping for a later wait.
    awaited: frozenset[str] = frozenset()

    @classmethod
    def of(cls, inp: JourneyInput) -> Run:
        graph = build_graph(inp.ir)
        return cls(
            inp=inp,
            graph=graph,
            state=inp.state,
            seen=set(inp.state.seen_event_ids) if inp.state else set(),
            awaited=frozenset(step.event for step in graph.nodes.values() if isinstance(step, WaitEventStep)),
        )

    def require_state(self) -> RunState:
        if self.state is None:
            raise RuntimeError("run has not begun")
        return self.state

    def key(self, node_id: str) -> str:
        """The idempotency key of a side effect: (run, node, visit)."""
        state = self.require_state()
        return f"{state.run_key}:{node_id}:{state.visits.get(node_id, 1)}"

    def follows(self, patch_id: str) -> bool:
        """An older patch: taken for granted by runs on the local-effects
        revision (no marker of its own), asked for by runs replaying older
        histories."""
        return self.local_effects or taken(patch_id)


def event_context(event: UserEvent) -> dict[str, Any]:
    """What templates, ``event.x`` conditions and ``wait until event.x`` see of
    an event."""
    return {**event.properties, "_name": event.name, "_id": event.id}


def shown(value: object) -> object:
    """A value as a step record may carry it (JSON, short)."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)[:80]
