"""The interpreter's patches: each id gates a change of its command sequence so
that runs begun on older code still replay, and the stage each one is at.

A patch goes through three stages, as temporalio/samples-python's ``patching``
sample does:

1. ``patched``: both branches are in the code. ``workflow.patched(id)`` records
   a marker on new runs (they take the new branch) and answers False when
   replaying a history without it (the old branch).
2. ``deprecated``: only the new branch is left; ``workflow.deprecate_patch(id)``
   lets runs that carry the marker keep replaying, and new runs record none.
3. removed: the id leaves the code and this registry.

When a patch may move on (the removal rule):

- ``patched`` → ``deprecated`` once no run that took the old branch can be
  replayed any more: every ``JourneyWorkflow`` execution started before the
  patch shipped (``shipped``) has closed, and the namespace's retention has
  passed since the last of them closed (a query or a reset of a closed run
  replays it too). Journeys wait for weeks and ``wait for event`` without
  ``up to`` waits forever, so check rather than guess: visibility
  ``WorkflowType = 'JourneyWorkflow' AND ExecutionStatus = 'Running' AND
  StartTime < '<shipped>'`` must count 0 (a continued-as-new execution starts
  anew on the code of its day, so it counts from its own start time). Then
  add 30 days of retention.
- ``deprecated`` → removed by the same rule, counted from the day the
  deprecation shipped: runs begun on the ``patched`` code call ``patched(id)``,
  and once they are gone nothing asks for the id.
- The committed histories (``tests/workflows/histories``) follow the code:
  deprecating a patch retires (deletes) every history recorded before it
  (those whose runs carry neither its marker nor the marker of a patch that
  implies it); removing it retires those recorded while it was ``patched``.
  ``tests/workflows/test_patches.py`` checks both ways: no history older than
  a deprecated patch is left, and every patch still ``patched`` has a history
  that replays its old branch.

Workflow code asks through ``taken``, never ``workflow.patched`` directly, so
moving a patch to the next stage is a change of its ``stage`` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import assert_never

from temporalio import workflow


class Stage(StrEnum):
    PATCHED = "patched"
    DEPRECATED = "deprecated"


@dataclass(frozen=True)
class Patch:
    id: str
    stage: Stage
    shipped: str  # ISO date the ``patched`` stage was released
    why: str
    # Patches whose new branch a run of this one takes without asking (no
    # marker of their own): a history with this marker is not older than them.
    implies: tuple[str, ...] = ()


LEAN_SNAPSHOTS = "lean-snapshots"
END_WITH_RECORDS = "end-with-records"
LOCAL_EFFECTS = "local-effects"
BUFFERED_EVENTS = "buffered-events"
LIVE_SIGNALS = "live-signals"

PATCHES: dict[str, Patch] = {
    patch.id: patch
    for patch in (
        Patch(
            LEAN_SNAPSHOTS,
            Stage.PATCHED,
            shipped="2026-11-23",
            why="read the user before a send/coupon only when quiet hours or tag exit rules need it",
        ),
        Patch(
            END_WITH_RECORDS,
            Stage.PATCHED,
            shipped="2026-11-23",
            why="the run's end goes with its last step records in one local activity, not a separate end_run",
        ),
        Patch(
            LOCAL_EFFECTS,
            Stage.PATCHED,
            shipped="2026-11-23",
            why=(
                "side effects (begin, send, coupon, tags) are local activities, so a run that does not wait is one "
                "workflow task; the entry search attributes are not upserted again when the start set them. A run "
                "on this revision takes the two above without asking: one patch marker a new run, not three (each "
                "marker is also a search-attribute write on the server)"
            ),
            implies=(LEAN_SNAPSHOTS, END_WITH_RECORDS),
        ),
        Patch(
            BUFFERED_EVENTS,
            Stage.PATCHED,
            shipped="2026-12-01",
            why=(
                "only `wait for event` consumes events: one that arrived during a plain wait, a send or another "
                "wait is kept in the run's state (across continue-as-new) until a `wait for event` takes it, "
                "instead of being forgotten when the next wait began (issue 12). A run on this revision takes "
                "the local-effects revision and what it implies without asking: still one marker a new run"
            ),
            implies=(LOCAL_EFFECTS, LEAN_SNAPSHOTS, END_WITH_RECORDS),
        ),
        Patch(
            LIVE_SIGNALS,
            Stage.PATCHED,
            shipped="2026-12-01",
            why=(
                "a tag change (the `tag_added` / `tag_removed` events) wakes a waiting run to read the user again, "
                "so `exit when tag …` fires at once, not at the next send; an exit noticed while a step was "
                "reading the user (an exit event, a `merged` signal) stops the step before its send, coupon or "
                "tag change (issue 12). Takes the buffered-events revision and what it implies without asking"
            ),
            implies=(BUFFERED_EVENTS, LOCAL_EFFECTS, LEAN_SNAPSHOTS, END_WITH_RECORDS),
        ),
    )
}


def taken(patch_id: str) -> bool:
    """Whether this run follows the patch's new branch, asked the way its stage
    requires. Like ``workflow.patched`` it records a command: call it at the
    same point of the run on every replay."""
    patch = PATCHES[patch_id]
    match patch.stage:
        case Stage.PATCHED:
            return workflow.patched(patch.id)
        case Stage.DEPRECATED:
            workflow.deprecate_patch(patch.id)
            return True
        case _:
            assert_never(patch.stage)
