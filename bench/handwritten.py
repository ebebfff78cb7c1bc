"""The reference journey written by hand as a plain Temporal workflow: the
baseline ``runtime_bench`` compares the interpreter against.

It does what a careful developer would write for the same journey and the same
product guarantees: it registers the entry, sends through the same activities
(idempotency keys, ledger, caps), records what happened for stats in one batch
per wait, and marks where the user waits with a search attribute.

    send wecom "welcome"
    wait for event order_paid up to 2s:
      on event: tag add ordered
      on timeout: send sms "nudge"
    wait 1s
    if tag vip: coupon "vip_pool"
    else: send sms "thanks"
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from contracts import names
    from contracts import search_attributes as sa
    from contracts.activities import (
        BeginRunRequest,
        BeginRunResult,
        CouponRequest,
        CouponResult,
        EndRunRequest,
        RecordStepsRequest,
        SendRequest,
        SendResult,
        StepRecord,
        TagRequest,
        UserSnapshot,
        UserSnapshotRequest,
    )
    from contracts.runs import JourneyInput, UserEvent

RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
T = timedelta(seconds=30)


@workflow.defn(name="HandwrittenJourney")
class HandwrittenJourney:
    def __init__(self) -> None:
        self.events: list[UserEvent] = []

    @workflow.signal(name="event")
    def on_event(self, event: UserEvent) -> None:
        if all(e.id != event.id for e in self.events):
            self.events.append(event)

    @workflow.run
    async def run(self, inp: JourneyInput) -> str:
        info = workflow.info()
        run_key = f"{info.workflow_id}:{info.first_execution_run_id}"
        records: list[StepRecord] = []

        def record(node: str, kind: str, outcome: str) -> None:
            records.append(
                StepRecord(
                    run_key=run_key,
                    seq=len(records) + 1,
                    journey_id=inp.journey_id,
                    version=inp.version,
                    user_id=inp.user_id,
                    node_id=node,
                    kind=kind,
                    outcome=outcome,
                    at=workflow.now(),
                )
            )

        async def flush() -> None:
            pending = [r for r in records if r.seq > flushed[0]]
            if pending:
                await workflow.execute_local_activity(
                    names.RECORD_STEPS, RecordStepsRequest(records=pending), start_to_close_timeout=T
                )
                flushed[0] = pending[-1].seq

        flushed = [0]

        async def send(node: str, channel: str, template: str) -> None:
            result = await workflow.execute_activity(
                names.SEND,
                SendRequest(
                    idempotency_key=f"{run_key}:{node}:1",
                    run_key=run_key,
                    journey_id=inp.journey_id,
                    version=inp.version,
                    node_id=node,
                    user_id=inp.user_id,
                    channels=[channel],
                    template=template,
                    now=workflow.now(),
                ),
                result_type=SendResult,
                start_to_close_timeout=T,
                retry_policy=RETRY,
            )
            record(node, "send", result.status)

        begun = await workflow.execute_activity(
            names.BEGIN_RUN,
            BeginRunRequest(
                run_key=run_key,
                journey_id=inp.journey_id,
                version=inp.version,
                user_id=inp.user_id,
                reentry_mode="always",
                now=workflow.now(),
            ),
            result_type=BeginRunResult,
            start_to_close_timeout=T,
            retry_policy=RETRY,
        )
        if not begun.allowed:
            return "refused"
        workflow.upsert_search_attributes(
            [
                sa.JOURNEY_ID.value_set(inp.journey_id),
                sa.JOURNEY_VERSION.value_set(inp.version),
                sa.JOURNEY_USER.value_set(inp.user_id),
            ]
        )
        record("entry", "journey", "entered")
        await send("welcome", "wecom", "welcome")

        workflow.upsert_search_attributes([sa.JOURNEY_STEP.value_set("wait-order")])
        await flush()
        try:
            await workflow.wait_condition(lambda: any(e.name == "order_paid" for e in self.events), timeout=2)
            ordered = True
        except TimeoutError:
            ordered = False
        if ordered:
            await workflow.execute_activity(
                names.CHANGE_TAGS,
                TagRequest(user_id=inp.user_id, action="add", tags=["ordered"], source="bench", now=workflow.now()),
                start_to_close_timeout=T,
                retry_policy=RETRY,
            )
            record("tag-ordered", "tag", "add")
        else:
            await send("nudge", "sms", "nudge")

        workflow.upsert_search_attributes([sa.JOURNEY_STEP.value_set("wait-1s")])
        await flush()
        await workflow.sleep(1)

        snapshot = await workflow.execute_local_activity(
            names.USER_SNAPSHOT,
            UserSnapshotRequest(user_id=inp.user_id, now=workflow.now()),
            result_type=UserSnapshot,
            start_to_close_timeout=T,
        )
        if "vip" in snapshot.tags:
            await workflow.execute_activity(
                names.ISSUE_COUPON,
                CouponRequest(
                    idempotency_key=f"{run_key}:coupon:1",
                    run_key=run_key,
                    journey_id=inp.journey_id,
                    node_id="coupon",
                    user_id=inp.user_id,
                    pool="vip_pool",
                    now=workflow.now(),
                ),
                result_type=CouponResult,
                start_to_close_timeout=T,
                retry_policy=RETRY,
            )
            record("coupon", "coupon", "issued")
        else:
            await send("thanks", "sms", "thanks")
        record("end", "end", "completed")
        await flush()
        await workflow.execute_activity(
            names.END_RUN,
            EndRunRequest(
                run_key=run_key, journey_id=inp.journey_id, user_id=inp.user_id, outcome="completed", now=workflow.now()
            ),
            start_to_close_timeout=T,
            retry_policy=RETRY,
        )
        return "completed"
