"""The activities the journey interpreter calls.

Each is registered under its name in ``contracts.names``, which the
interpreter calls it by (names are recorded in Temporal history: never change one).

Each activity is a thin async shell: the store work is synchronous SQLAlchemy
run in a worker thread (``asyncio.to_thread``), so the worker's event loop
never blocks on the database, and the logic lives in small modules that are
tested without Temporal (``engine.runs``, ``engine.ledger``, ``engine.caps``,
``engine.coupons``…). Every answer is computed against the request's ``now``
(workflow time), never the wall clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from temporalio import activity
from temporalio.exceptions import ApplicationError

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
    TagRequest,
    UserSnapshot,
    UserSnapshotRequest,
)
from engine import (
    caps,
    catalog,
    coupons,
    identity,
    ledger,
    merges,
    replays,
    run_signals,
    runs,
    split_tests,
    tracked_links,
)
from engine.channels.base import ChannelProvider, OutboundMessage
from engine.consent import UNKNOWN_USER, reachable_channels
from engine.derived import derive
from engine.recipient import Profile, Recipient, canonical_profile, recipient
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Event, User
from engine.store.types import utc
from engine.tags import add_tags, remove_tags, tags_of
from engine.templates import TemplateRenderError, build_context, get_template, render, transactional_names


@dataclass(frozen=True)
class _Decision:
    """A send settled before any provider call (suppressed / failed)."""

    status: str
    reason: str
    channel: str | None = None


log = logging.getLogger("journeys.engine")
TELL_RUNS_SECONDS = 3.0  # a tag step waits at most this long to tell the user's other runs


@dataclass(frozen=True)
class _Plan:
    channel: str
    address: str | None
    subject: str | None
    body: str
    transactional: bool
    template_version: int
    timezone: str | None = None  # the user's: where their calendar day starts

    @property
    def address_hash(self) -> str:
        """Who the send reaches, without keeping the address in the ledger."""
        return hashlib.sha256(f"{self.channel}:{self.address or ''}".encode()).hexdigest()


class JourneyActivities:
    """Bound to one store and one set of channel providers; register
    ``activities.all()`` on the worker.

    ``JourneyActivities(Store(url), {"sms": SmsProvider(...), ...}, Settings())``.
    """

    def __init__(
        self, store: Store, providers: Mapping[str, ChannelProvider], settings: Settings | None = None
    ) -> None:
        self.store = store
        self.providers = dict(providers)
        self.settings = settings or Settings()
        self._priorities: tuple[float, dict[str, int]] = (-1e9, {})  # (read at, journey -> priority)
        self._priorities_read: asyncio.Future[dict[str, int]] | None = None  # the read under way, if any

    PRIORITIES_TTL = 30.0  # seconds the live journeys' priorities are reused (a deploy shows within it)

    async def rival_priority(self, journey_id: str) -> int | None:
        """The best priority (lowest number) of any other live journey, read
        from the catalog at most every ``PRIORITIES_TTL`` seconds, by one read
        however many sends find the copy stale at once: every send asks (the
        interpreter always gives a priority), and each used to read the
        catalog itself (every journey's IR, decoded) until the first read was
        back: 8% of the worker's busy samples in ``bench/process_bench.py``."""
        read_at, known = self._priorities
        if time.monotonic() - read_at > self.PRIORITIES_TTL:
            if self._priorities_read is None or self._priorities_read.done():
                self._priorities_read = asyncio.ensure_future(self._read_priorities())
            # shielded: a send cancelled meanwhile leaves the read to the others
            known = await asyncio.shield(self._priorities_read)
        return min((p for j, p in known.items() if j != journey_id), default=None)

    async def _read_priorities(self) -> dict[str, int]:
        known = await asyncio.to_thread(catalog.priorities, self.store)
        self._priorities = (time.monotonic(), known)
        return known

    # ------------------------------------------------------------ snapshot

    @activity.defn(name=names.USER_SNAPSHOT)
    async def user_snapshot(self, req: UserSnapshotRequest) -> UserSnapshot:
        return await asyncio.to_thread(self._snapshot, req)

    def _snapshot(self, req: UserSnapshotRequest) -> UserSnapshot:
        now = utc(req.now)
        with self.store.read() as s:
            transactional = transactional_names(s, list(req.templates))
            uid = identity.canonical_user_id(s, req.user_id)
            user = s.get(User, uid) if uid else None
            if user is None:
                return UserSnapshot(
                    user_id=req.user_id,
                    exists=False,
                    reachable=UNKNOWN_USER.reachable(),
                    event_counts={q.key: 0 for q in req.event_counts},
                    transactional_templates=transactional,
                )
            derived = derive(s, user.id, now, self.settings.derived)
            tags = [t for t in tags_of(s, user.id) if not t.startswith(("stage:", "rfm:"))]
            if derived is not None:
                tags.append(f"stage:{derived.stage}")
                if derived.rfm:
                    tags.append(f"rfm:{derived.rfm}")
            counts: dict[str, int] = {}
            for q in req.event_counts:
                # Only a lower bound: an event stored a moment before the signal
                # that woke the workflow must count even if its clock ran ahead.
                stmt = select(func.count()).select_from(Event).where(Event.user_id == user.id, Event.name == q.event)
                if q.within_seconds:
                    stmt = stmt.where(Event.occurred_at > now - timedelta(seconds=q.within_seconds))
                counts[q.key] = int(s.execute(stmt).scalar_one())
            return UserSnapshot(
                user_id=user.id,
                exists=True,
                tags=sorted(tags),
                attributes=dict(user.attributes or {}),
                stage=derived.stage if derived else user.stage,
                rfm=derived.rfm if derived else user.rfm,
                timezone=user.timezone or (user.attributes or {}).get("timezone"),
                reachable=reachable_channels(s, user.id),
                event_counts=counts,
                transactional_templates=transactional,
            )

    # ------------------------------------------------------------ runs

    @activity.defn(name=names.BEGIN_RUN)
    async def begin_run(self, req: BeginRunRequest) -> BeginRunResult:
        def work(s: Session) -> BeginRunResult:
            uid = identity.canonical_user_id(s, req.user_id) or req.user_id
            answer = runs.begin(
                s,
                self.store,
                run_key=req.run_key,
                journey_id=req.journey_id,
                version=req.version,
                user_id=uid,
                mode=req.reentry_mode,
                cooldown_seconds=req.cooldown_seconds,
                now=req.now,
                trigger_event=req.trigger_event,
            )
            return BeginRunResult(allowed=answer.allowed, reason=answer.reason)

        return await asyncio.to_thread(self.store.transact, work)

    @activity.defn(name=names.END_RUN)
    async def end_run(self, req: EndRunRequest) -> None:
        await asyncio.to_thread(self.store.transact, lambda s: self._end(s, req))

    def _end(self, s: Session, req: EndRunRequest) -> None:
        uid = identity.canonical_user_id(s, req.user_id) or req.user_id
        runs.end(
            s,
            run_key=req.run_key,
            journey_id=req.journey_id,
            user_id=uid,
            outcome=req.outcome,
            reason=req.reason,
            now=req.now,
        )

    @activity.defn(name=names.RECORD_STEPS)
    async def record_steps(self, req: RecordStepsRequest) -> None:
        end = req.end

        def work(s: Session) -> None:
            ids = {r.user_id for r in req.records} | ({end.user_id} if end is not None else set())
            canonical = {u: identity.canonical_user_id(s, u) or u for u in ids}
            runs.add_steps(s, [r.model_copy(update={"user_id": canonical[r.user_id]}) for r in req.records])
            if end is not None:  # idempotent, as a local activity may run twice
                runs.end(
                    s,
                    run_key=end.run_key,
                    journey_id=end.journey_id,
                    user_id=canonical[end.user_id],
                    outcome=end.outcome,
                    reason=end.reason,
                    now=end.now,
                )

        # The records and the run's end in one write transaction (the end used
        # to be a second one): both are idempotent, so a retry changes nothing.
        if req.records or end is not None:
            await asyncio.to_thread(self.store.transact, work)

    # ------------------------------------------------------------ tags, coupons

    @activity.defn(name=names.CHANGE_TAGS)
    async def change_tags(self, req: TagRequest) -> None:
        def work(s: Session) -> tuple[str, bool]:
            uid = identity.ensure_user(s, req.user_id, now=req.now)
            if req.action == "add":
                add_tags(s, uid, req.tags, source=req.source, now=req.now)
            else:
                remove_tags(s, uid, req.tags, source=req.source, now=req.now)
            return uid, bool(s.info.get(run_signals.QUEUED))

        uid, queued = await asyncio.to_thread(self.store.transact, work)
        if queued:
            await self._tell_runs(uid)

    async def _tell_runs(self, uid: str) -> None:
        """The user's other runs hear of the change now (``exit when tag``);
        what cannot be sent here is swept by the API."""
        try:
            client = activity.client()
        except RuntimeError:  # no client (a test environment): the sweep sends it
            return
        try:
            # bounded: with Temporal away the client would retry for ~10 s a
            # signal and hold the tag step; the API's sweep sends what is left
            async with asyncio.timeout(TELL_RUNS_SECONDS):
                await run_signals.deliver(self.store, client, user_id=uid)
        except TimeoutError:
            log.warning("telling %s's runs of a tag change timed out; the sweep sends it", uid)

    @activity.defn(name=names.ISSUE_COUPON)
    async def issue_coupon(self, req: CouponRequest) -> CouponResult:
        def work(s: Session) -> CouponResult:
            uid = identity.canonical_user_id(s, req.user_id) or req.user_id
            result = coupons.issue(
                s,
                self.store,
                idempotency_key=req.idempotency_key,
                pool=req.pool,
                user_id=uid,
                now=req.now,
                run_key=req.run_key,
                journey_id=req.journey_id,
                node_id=req.node_id,
                code_prefix=self.settings.coupon_code_prefix,
            )
            return CouponResult(status=result.status, code=result.code, coupon=result.coupon)

        return await asyncio.to_thread(self.store.transact, work)

    # ------------------------------------------------------------ send

    @activity.defn(name=names.SEND)
    async def send(self, req: SendRequest) -> SendResult:
        prepared = await asyncio.to_thread(self._prepare, req)
        if isinstance(prepared, ledger.DeliveryInfo):
            return _result(prepared)
        _, uid, plan = prepared
        meta = ledger.DeliveryMeta(
            idempotency_key=req.idempotency_key,
            user_id=uid,
            at=req.now,
            run_key=req.run_key,
            journey_id=req.journey_id,
            version=req.version,
            node_id=req.node_id,
            template=req.template,
            variant=req.variant,
        )
        if isinstance(plan, _Decision):
            meta = _with_channel(meta, plan.channel)
            decided = await asyncio.to_thread(ledger.record, self.store, meta, plan.status, plan.reason)
            return await self._settled(decided, req, transactional=False, timezone=None)
        meta = replace(meta, channel=plan.channel, address_hash=plan.address_hash)
        provider = self.providers.get(plan.channel)
        if provider is None:
            reason = f"no provider configured for channel {plan.channel}"
            decided = await asyncio.to_thread(ledger.record, self.store, meta, "failed", reason)
            return await self._settled(decided, req, transactional=plan.transactional, timezone=plan.timezone)
        message = OutboundMessage(
            idempotency_key=req.idempotency_key,
            user_id=uid,
            channel=plan.channel,
            address=plan.address,
            template=req.template,
            subject=plan.subject,
            body=plan.body,
            data=_message_data(req, plan),
        )
        cap = caps.CapRequest(
            user_id=uid,
            channel=plan.channel,
            delivery_key=req.idempotency_key,
            now=req.now,
            journey_id=req.journey_id,
            transactional=plan.transactional,
            journey_limit_count=req.journey_limit_count,
            journey_limit_window_seconds=req.journey_limit_window_seconds,
            journey_limit_calendar=req.journey_limit_calendar,
            timezone=plan.timezone or req.journey_timezone,
            priority=req.priority,
            rival_priority=await self.rival_priority(req.journey_id) if req.priority is not None else None,
            arbitration_seconds=self.settings.cap_arbitration_seconds,
        )
        try:
            info = await ledger.deliver(
                self.store,
                self.settings,
                provider,
                meta,
                message,
                cap,
                max_attempts=self.settings.send_max_attempts,
                retry_deadline=timedelta(seconds=self.settings.send_retry_deadline(plan.channel)),
                defer_until=req.defer_until,
            )
        except ledger.RetryableSendError as exc:
            raise ApplicationError(str(exc), type="RetryableSendError") from exc
        if isinstance(info, ledger.Deferred):
            return SendResult(status="capped", channel=plan.channel, reason=info.reason, retry_at=info.retry_at)
        return await self._settled(info, req, transactional=plan.transactional, timezone=plan.timezone)

    async def _settled(
        self, info: ledger.DeliveryInfo, req: SendRequest, *, transactional: bool, timezone: str | None
    ) -> SendResult:
        """The run's answer; a failed send keeps its request so it can be
        replayed (``engine.replays``). One more write, on failures only."""
        if info.status == "failed":
            await asyncio.to_thread(
                replays.keep, self.store, info.idempotency_key, req, transactional=transactional, timezone=timezone
            )
        return _result(info)

    def _prepare(
        self, req: SendRequest
    ) -> ledger.DeliveryInfo | tuple[ledger.DeliveryInfo | None, str, _Plan | _Decision]:
        """The ledger's answer when it is final; else (the reservation if any,
        the canonical user, the plan): all read in one read transaction."""
        with self.store.read() as s:
            existing = ledger.find(s, req.idempotency_key)
            if existing is not None and existing.final:
                return existing
            uid, profile = canonical_profile(s, req.user_id)
            merged = merges.run_merges(s, req.run_key)
            if merged.ended:
                # ended by a merge, the signal not handled yet: the kept run sends
                return (
                    existing,
                    uid,
                    _Decision("suppressed", "run ended: merged", req.channels[0] if req.channels else None),
                )
            forced = existing.channel if existing is not None else None  # a reserved send keeps its channel
            plan = self._plan_in(s, req, uid, profile, forced)
            if (
                isinstance(plan, _Plan)
                and merged.kept
                and merges.already_sent_by_merged(
                    s,
                    run_key=req.run_key,
                    journey_id=req.journey_id,
                    node_id=req.node_id,
                    address_hash=plan.address_hash,
                )
            ):
                return (
                    existing,
                    uid,
                    _Decision("suppressed", "already sent to this address by a merged run", plan.channel),
                )
            return existing, uid, plan

    def _plan_in(
        self, s: Session, req: SendRequest, uid: str, user: Profile | None, forced_channel: str | None
    ) -> _Plan | _Decision:
        """Everything decided from the store before the provider: holdout,
        template, channel, consent, rendering. Caps come later, atomically,
        in the ledger's reservation."""
        first = req.channels[0] if req.channels else None
        if req.holdout:
            return _Decision("suppressed", "holdout", first)
        template = get_template(s, req.template)
        if template is None:
            return _Decision("failed", f"unknown template {req.template!r}", first)
        person = recipient(s, uid) if user else Recipient()
        user_reach = person.reach
        if forced_channel is not None:
            # a reserved (or replayed) send keeps its channel, but consent is
            # read again: an opt-out since the first attempt stops it
            channel = forced_channel
            blocked = user_reach.why_not(channel)
            if blocked is not None:
                return _Decision("suppressed", blocked, channel)
        elif req.best_of:
            usable = user_reach.reachable(req.channels)
            if not usable:
                return _Decision("suppressed", f"unreachable on {', '.join(req.channels)}", first)
            channel = usable[0]
        else:
            if first is None:
                return _Decision("failed", "no channel given", None)
            channel = first
            blocked = user_reach.why_not(channel)
            if blocked is not None:
                return _Decision("suppressed", blocked, channel)
        context = build_context(
            user_id=uid,
            attributes=dict(user.attributes) if user else {},
            timezone=user.timezone if user else None,
            stage=user.stage if user else None,
            rfm=user.rfm if user else None,
            identifiers=person.identities,
            tags=person.tags,
            event=req.event,
            coupon=req.coupon,
            channel=channel,
        )
        links = tracked_links.for_send(self.settings, req, uid)
        try:
            rendered = render(template, channel, context, links)
        except TemplateRenderError as exc:
            return _Decision("failed", str(exc), channel)
        tracked_links.save(self.store, links)  # before the message goes out: its clicks find their link
        return _Plan(
            channel=channel,
            address=user_reach.addresses.get(channel),
            subject=rendered.subject,
            body=rendered.body,
            transactional=template.transactional,
            template_version=template.version,
            timezone=(user.timezone or user.attributes.get("timezone")) if user else None,
        )

    # ------------------------------------------------------------ split tests

    @activity.defn(name=names.SPLIT_TEST)
    async def split_test(self, req: SplitTestRequest) -> SplitTestResult:
        """A ``split test``'s start and, with ``decide``, its winner
        (``engine.split_tests``: decided once per journey version)."""
        args = (self.store, req.journey_id, req.version, req.node_id, req.now)
        if req.decide:
            minimum = self.settings.split_test_min_per_variant
            found = await asyncio.to_thread(split_tests.decide, *args, minimum)
        else:
            found = await asyncio.to_thread(split_tests.start, *args)
        return SplitTestResult(
            started_at=found.started_at,
            winner=found.winner,
            decided_by=found.decided_by,  # type: ignore[arg-type]
            reason=found.reason,
        )

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


def _with_channel(meta: ledger.DeliveryMeta, channel: str | None) -> ledger.DeliveryMeta:
    return replace(meta, channel=channel)


def _message_data(req: SendRequest, plan: _Plan) -> dict[str, Any]:
    data: dict[str, Any] = {
        "journey_id": req.journey_id,
        "version": req.version,
        "node_id": req.node_id,
        "template_version": plan.template_version,
        "transactional": plan.transactional,
    }
    if req.variant:
        data["variant"] = req.variant
    if req.coupon:
        data["coupon"] = dict(req.coupon)
    return data


def _result(info: ledger.DeliveryInfo) -> SendResult:
    status = info.status if info.status in ("sent", "pending", "suppressed", "failed") else "failed"
    return SendResult(status=status, channel=info.channel, reason=info.reason, delivery_id=info.id)  # type: ignore[arg-type]
