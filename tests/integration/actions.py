"""Temporal Cloud billable actions of one workflow run, counted from its
event history, by Temporal Cloud's definition (docs.temporal.io/cloud/actions):

- workflow started (client start, continue-as-new, child start): 1; a
  signal-with-start is 1 in all, its signal included;
- activity started or retried: 1 per attempt;
- local activities: 1 per workflow task that recorded any marker (all the
  markers of one task are one action);
- timer started, search-attribute upsert, signal received or sent, update
  accepted: 1 each; a child workflow: 2.

Queries and activity heartbeats are billed too but leave no event; the
journeys interpreter uses neither on its normal path (queries are the
console's, on demand)."""

from __future__ import annotations

from collections import Counter

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory

ONE_EACH = {
    EventType.EVENT_TYPE_TIMER_STARTED: "timers",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "search attribute upserts",
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "signals sent",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "updates",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continue-as-new",
}


def billable_actions(history: WorkflowHistory) -> Counter[str]:
    """The run's actions by kind; ``sum(...values())`` is the total."""
    out: Counter[str] = Counter()
    marker_tasks: set[int] = set()
    first_task_started = False
    for event in history.events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            out["workflow started"] += 1
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            first_task_started = True
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            # A signal before the first workflow task ran is the start's own
            # (journeys starts event-entered runs with signal-with-start):
            # part of the start's one action.
            if not first_task_started and "start signal" not in out:
                out["start signal"] = 0
                continue
            out["signals received"] += 1
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            out["activity attempts"] += event.activity_task_started_event_attributes.attempt
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            marker_tasks.add(event.marker_recorded_event_attributes.workflow_task_completed_event_id)
        elif kind == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            out["child workflows"] += 2
        elif kind in ONE_EACH:
            out[ONE_EACH[kind]] += 1
    out.pop("start signal", None)
    if marker_tasks:
        out["workflow tasks with local activities"] = len(marker_tasks)
    return out
