"""A journey's store rows for many runs at once (Core executemany): runs
waiting at a node, each with its step records and one delivery, the shape
100k waiting runs leave in the store, for the paging tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import insert

from engine.store import Store
from engine.store.models import Delivery, Run, StepRecord

T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


def seed_waiting(
    store: Store, journey_id: str, n: int, *, send: str = "send-x", wait: str = "wait-x", first: int = 0
) -> None:
    """``n`` open runs of ``journey_id`` (users ``u0000``…, from ``first``):
    entered, sent at ``send``, waiting at ``wait``; every tenth run has moved
    on past it."""
    runs, steps, deliveries = [], [], []
    for i in range(first, first + n):
        key, user, at = f"journey:{journey_id}:u{i:04d}:1", f"u{i:04d}", T0 + timedelta(seconds=i)
        runs.append(
            {
                "run_key": key,
                "journey_id": journey_id,
                "version": 1,
                "user_id": user,
                "admitted": True,
                "entered_at": at,
            }
        )
        rows = [("entry", "journey", "entered"), (send, "send", "passed"), (wait, "wait", "waiting")]
        if i % 10 == 0:
            rows.append((wait, "wait", "passed"))
        for seq, (node, kind, outcome) in enumerate(rows, start=1):
            steps.append(
                {
                    "run_key": key,
                    "seq": seq,
                    "journey_id": journey_id,
                    "version": 1,
                    "user_id": user,
                    "node_id": node,
                    "kind": kind,
                    "outcome": outcome,
                    "at": at,
                    "detail": {},
                }
            )
        deliveries.append(
            {
                "idempotency_key": f"{key}:{send}",
                "run_key": key,
                "journey_id": journey_id,
                "version": 1,
                "node_id": send,
                "user_id": user,
                "channel": "sms",
                "template": "t",
                "status": "sent",
                "at": at,
            }
        )
    with store.session() as s:
        s.execute(insert(Run), runs)
        s.execute(insert(StepRecord), steps)
        s.execute(insert(Delivery), deliveries)
