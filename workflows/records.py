"""Step records: what the run did, buffered and written in one local activity
per wait, and the run's end, written with its last records.

This module must stay free of side effects.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow

from contracts import names
from contracts.activities import EndRunRequest, RecordStepsRequest, StepRecord
from workflows.activity_options import ACTIVITY_RETRY, LOCAL_TIMEOUT, SIDE_EFFECT_TIMEOUT
from workflows.patches import END_WITH_RECORDS
from workflows.run import Run


def record(
    run: Run,
    node_id: str,
    kind: str,
    outcome: str,
    detail: dict[str, Any] | None = None,
    variant: str | None = None,
) -> None:
    """Buffer one step record; ``flush`` writes it."""
    state = run.state
    if state is not None:
        state.record_seq += 1
    run.records.append(
        StepRecord(
            run_key=state.run_key if state else "",
            seq=state.record_seq if state else 0,
            journey_id=run.inp.journey_id,
            version=run.inp.version,
            user_id=run.inp.user_id,
            node_id=node_id,
            kind=kind,
            outcome=outcome,
            variant=variant or (state.variant if state else None),
            at=workflow.now(),
            detail={k: v for k, v in (detail or {}).items() if v is not None},
        )
    )


async def flush(run: Run, end: EndRunRequest | None = None) -> None:
    """Write buffered step records in one local activity: one history marker
    per wait instead of one activity per step (and the run's end with its
    last records)."""
    if not run.records and end is None:
        return
    records, run.records = run.records, []
    await workflow.execute_local_activity(
        names.RECORD_STEPS,
        RecordStepsRequest(records=records, end=end),
        start_to_close_timeout=LOCAL_TIMEOUT,
        retry_policy=ACTIVITY_RETRY,
    )


async def finish(run: Run, outcome: str, reason: str | None) -> str:
    """End the run: its last record, and the end itself (with the records on
    the end-with-records revision, as a separate activity before it)."""
    state = run.require_state()
    record(run, "end", "end", outcome, {"reason": reason})
    end = EndRunRequest(
        run_key=state.run_key,
        journey_id=run.inp.journey_id,
        user_id=run.inp.user_id,
        outcome=outcome,  # type: ignore[arg-type]
        reason=reason,
        now=workflow.now(),
    )
    if run.follows(END_WITH_RECORDS):
        await flush(run, end=end)
        return outcome
    await flush(run)
    await workflow.execute_activity(
        names.END_RUN,
        end,
        start_to_close_timeout=SIDE_EFFECT_TIMEOUT,
        retry_policy=ACTIVITY_RETRY,
    )
    return outcome
