"""The registered names of the workflows and of the activities they call.

Workflows call activities by these names (``workflow.execute_activity(NAME, …,
result_type=…)``, as temporalio/samples-python's ``dsl`` sample does), so
``workflows/`` needs nothing from ``engine/``; the engine registers its
activities under the same constants, and the engine starts workflows by their
names (``engine.starts``, ``engine.schedules``) without importing them. A name is
recorded in every history that calls it: never change one (``tests/workflows/test_replay.py`` replays the
committed histories, ``tests/workflows/test_activity_names.py`` checks that the
engine registers each name the workflows call).
"""

from __future__ import annotations

from typing import Final

# the workflows (workflows/journey.py, workflows/broadcast.py), started by name from engine/
JOURNEY_WORKFLOW: Final = "JourneyWorkflow"
BROADCAST_WORKFLOW: Final = "AudienceBroadcastWorkflow"

# JourneyWorkflow's signals (workflows/journey.py), sent by engine.starts and engine.run_signals
EVENT_SIGNAL: Final = "event"  # a UserEvent: something the user did, or a tag change (TAG_ADDED / TAG_REMOVED)
MERGED_SIGNAL: Final = "merged"  # a MergedNotice: the person is also in this journey on a run that is kept

# The events a tag change is delivered to runs as (``properties``: ``tag``,
# ``source``), so ``wait for event tag_added where event.tag == "vip"`` and ``exit
# when event tag_removed`` work, and ``exit when tag …`` is checked at once.
TAG_ADDED: Final = "tag_added"
TAG_REMOVED: Final = "tag_removed"
TAG_EVENTS: Final = (TAG_ADDED, TAG_REMOVED)

# JourneyWorkflow (workflows/interpreter.py and its modules) → engine.activities.JourneyActivities
USER_SNAPSHOT: Final = "journeys.user_snapshot"
BEGIN_RUN: Final = "journeys.begin_run"
END_RUN: Final = "journeys.end_run"
RECORD_STEPS: Final = "journeys.record_steps"
CHANGE_TAGS: Final = "journeys.change_tags"
ISSUE_COUPON: Final = "journeys.issue_coupon"
SEND: Final = "journeys.send"
SPLIT_TEST: Final = "journeys.split_test"  # a `split test`'s start and decision (engine.split_tests)

JOURNEY_ACTIVITIES: Final = (
    USER_SNAPSHOT,
    BEGIN_RUN,
    END_RUN,
    RECORD_STEPS,
    CHANGE_TAGS,
    ISSUE_COUPON,
    SEND,
    SPLIT_TEST,
)

# AudienceBroadcastWorkflow (workflows/broadcast.py) → engine.broadcast_activities.BroadcastActivities
BROADCAST_BEGIN: Final = "journeys.broadcast_begin"
BROADCAST_PAGE: Final = "journeys.broadcast_page"
BROADCAST_FINISH: Final = "journeys.broadcast_finish"

BROADCAST_ACTIVITIES: Final = (BROADCAST_BEGIN, BROADCAST_PAGE, BROADCAST_FINISH)
