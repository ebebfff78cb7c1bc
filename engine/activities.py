"""The activities the journey interpreter calls. Helper-C fills the bodies.

Names are stable (they are recorded in Temporal history): ``journeys.<name>``.
"""

from __future__ import annotations

from temporalio import activity

from engine.contracts import (
    BeginRunRequest,
    BeginRunResult,
    CouponRequest,
    CouponResult,
    EndRunRequest,
    RecordStepsRequest,
    SendRequest,
    SendResult,
    TagRequest,
    UserSnapshot,
    UserSnapshotRequest,
)


class JourneyActivities:
    """Bound to one store and one set of channel providers; register
    ``activities.all()`` on the worker."""

    @activity.defn(name="journeys.user_snapshot")
    async def user_snapshot(self, req: UserSnapshotRequest) -> UserSnapshot:
        raise NotImplementedError

    @activity.defn(name="journeys.begin_run")
    async def begin_run(self, req: BeginRunRequest) -> BeginRunResult:
        raise NotImplementedError

    @activity.defn(name="journeys.end_run")
    async def end_run(self, req: EndRunRequest) -> None:
        raise NotImplementedError

    @activity.defn(name="journeys.send")
    async def send(self, req: SendRequest) -> SendResult:
        raise NotImplementedError

    @activity.defn(name="journeys.issue_coupon")
    async def issue_coupon(self, req: CouponRequest) -> CouponResult:
        raise NotImplementedError

    @activity.defn(name="journeys.change_tags")
    async def change_tags(self, req: TagRequest) -> None:
        raise NotImplementedError

    @activity.defn(name="journeys.record_steps")
    async def record_steps(self, req: RecordStepsRequest) -> None:
        raise NotImplementedError

    def all(self) -> list:
        return [
            self.user_snapshot,
            self.begin_run,
            self.end_run,
            self.send,
            self.issue_coupon,
            self.change_tags,
            self.record_steps,
        ]
