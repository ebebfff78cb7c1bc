"""In-memory activities with the engine's names, for interpreter unit tests.

They record every call so tests can assert exactly what the interpreter asked
for; the integration tests run the real engine activities instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity

from contracts import names
from contracts.activities import (
    BeginRunRequest,
    BeginRunResult,
    CouponRequest,
    CouponResult,
    EndRunRequest,
    RecordStepsRequest,
    SendRequest,
    SendResult,
    SplitTestRequest,
    SplitTestResult,
    StepRecord,
    TagRequest,
    UserSnapshot,
    UserSnapshotRequest,
)


@dataclass
class FakeEngine:
    tags: dict[str, set[str]] = field(default_factory=dict)
    attributes: dict[str, dict] = field(default_factory=dict)
    reachable: dict[str, list[str]] = field(default_factory=dict)
    timezone: str | None = "Asia/Shanghai"
    stock: dict[str, int] = field(default_factory=dict)
    transactional: set[str] = field(default_factory=set)
    event_counts: dict[str, int] = field(default_factory=dict)
    capped_times: dict[str, int] = field(default_factory=dict)
    split_winners: dict[str, str] = field(default_factory=dict)  # node -> the winner a decision names
    split_started: dict[tuple, Any] = field(default_factory=dict)
    split_decided: dict[tuple, str] = field(default_factory=dict)
    sends: list[SendRequest] = field(default_factory=list)
    coupons: list[CouponRequest] = field(default_factory=list)
    records: list[StepRecord] = field(default_factory=list)
    ends: list[EndRunRequest] = field(default_factory=list)
    entered: set[str] = field(default_factory=set)
    begun: dict[str, BeginRunResult] = field(default_factory=dict)
    # side effects are at-least-once (a retried workflow task re-runs its local
    # activities); the real ledger answers a repeated key with the first result
    sent: dict[str, SendResult] = field(default_factory=dict)
    issued: dict[str, CouponResult] = field(default_factory=dict)

    @activity.defn(name=names.USER_SNAPSHOT)
    async def user_snapshot(self, req: UserSnapshotRequest) -> UserSnapshot:
        return UserSnapshot(
            user_id=req.user_id,
            tags=sorted(self.tags.get(req.user_id, set())),
            attributes=self.attributes.get(req.user_id, {}),
            timezone=self.timezone,
            reachable=self.reachable.get(req.user_id, ["wecom", "sms", "push", "email"]),
            event_counts={q.key: self.event_counts.get(q.key, 0) for q in req.event_counts},
            transactional_templates=[t for t in req.templates if t in self.transactional],
        )

    @activity.defn(name=names.BEGIN_RUN)
    async def begin_run(self, req: BeginRunRequest) -> BeginRunResult:
        # idempotent by run key, like engine.runs.begin: a retried workflow
        # task runs the local activity again and must get the same answer
        if req.run_key in self.begun:
            return self.begun[req.run_key]
        key = f"{req.journey_id}:{req.user_id}"
        if req.reentry_mode == "once" and key in self.entered:
            answer = BeginRunResult(allowed=False, reason="already entered")
        else:
            self.entered.add(key)
            answer = BeginRunResult(allowed=True)
        self.begun[req.run_key] = answer
        return answer

    @activity.defn(name=names.END_RUN)
    async def end_run(self, req: EndRunRequest) -> None:
        self.ends.append(req)

    @activity.defn(name=names.SEND)
    async def send(self, req: SendRequest) -> SendResult:
        if req.idempotency_key in self.sent:
            return self.sent[req.idempotency_key]
        capped = self._capped(req)
        if capped is not None and capped.status == "capped":
            return capped  # nothing recorded: the same key asks again later
        self.sends.append(req)
        self.sent[req.idempotency_key] = result = capped or self._send(req)
        return result

    def _capped(self, req: SendRequest) -> SendResult | None:
        """``capped_times[template]`` answers: capped (retry in an hour) while
        the send may be deferred, as many times as given; then it goes."""
        left = self.capped_times.get(req.template, 0)
        if left <= 0:
            return None
        self.capped_times[req.template] = left - 1
        if req.defer_until is None:
            return SendResult(status="suppressed", channel=req.channels[0], reason="frequency cap (fake)")
        return SendResult(
            status="capped",
            channel=req.channels[0],
            reason="frequency cap (fake)",
            retry_at=req.now + timedelta(hours=1),
        )

    def _send(self, req: SendRequest) -> SendResult:
        if req.holdout:
            return SendResult(status="suppressed", reason="holdout")
        channel = req.channels[0]
        if req.best_of:
            reachable = self.reachable.get(req.user_id, ["wecom", "sms", "push", "email"])
            channel = next((c for c in req.channels if c in reachable), None)
            if channel is None:
                return SendResult(status="suppressed", reason="unreachable")
        return SendResult(status="sent", channel=channel)

    @activity.defn(name=names.SPLIT_TEST)
    async def split_test(self, req: SplitTestRequest) -> SplitTestResult:
        """A split test on the fake engine: started by the first asker; on
        ``decide`` the winner is ``split_winners[node]`` (else the first variant's
        name is unknown here: ``"A"``), decided once."""
        key = (req.journey_id, req.version, req.node_id)
        started = self.split_started.setdefault(key, req.now)
        if req.decide and key not in self.split_decided:
            self.split_decided[key] = self.split_winners.get(req.node_id, "A")
        winner = self.split_decided.get(key)
        return SplitTestResult(started_at=started, winner=winner, decided_by="test" if winner else None)

    @activity.defn(name=names.ISSUE_COUPON)
    async def issue_coupon(self, req: CouponRequest) -> CouponResult:
        if req.idempotency_key in self.issued:
            return self.issued[req.idempotency_key]
        self.issued[req.idempotency_key] = result = self._issue(req)
        return result

    def _issue(self, req: CouponRequest) -> CouponResult:
        self.coupons.append(req)
        left = self.stock.get(req.pool, 100)
        if left <= 0:
            return CouponResult(status="out_of_stock")
        self.stock[req.pool] = left - 1
        return CouponResult(status="issued", code=f"C-{len(self.coupons)}", coupon={"code": f"C-{len(self.coupons)}"})

    @activity.defn(name=names.CHANGE_TAGS)
    async def change_tags(self, req: TagRequest) -> None:
        tags = self.tags.setdefault(req.user_id, set())
        if req.action == "add":
            tags.update(req.tags)
        else:
            tags.difference_update(req.tags)

    @activity.defn(name=names.RECORD_STEPS)
    async def record_steps(self, req: RecordStepsRequest) -> None:
        # Local activities are at-least-once (re-run when a workflow task is
        # retried): the real store de-duplicates by (run_key, seq), so must we.
        known = {(r.run_key, r.seq) for r in self.records}
        self.records.extend(r for r in req.records if (r.run_key, r.seq) not in known)
        if req.end is not None and all(e.run_key != req.end.run_key for e in self.ends):
            self.ends.append(req.end)

    def all(self) -> list:
        return [
            self.user_snapshot,
            self.begin_run,
            self.end_run,
            self.send,
            self.issue_coupon,
            self.change_tags,
            self.record_steps,
            self.split_test,
        ]

    def sent_templates(self) -> list[str]:
        return [s.template for s in self.sends]
