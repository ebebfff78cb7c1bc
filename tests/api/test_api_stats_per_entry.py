"""``?per_entry=<event>`` on the stats route: a referral campaign's "new users
won / users reached" per variant (scenario 4), from runs and events in the
store. No Temporal needed: the numbers come from the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from api.app import create_app
from contracts.activities import StepRecord
from engine import runs
from engine.events import ingest_event
from engine.store import Store
from tests.api.conftest import auth, make_settings, unique

SOURCE = """journey "{name}"
  entry api
  split:
    50% A:
      send webhook "invite_a"
    50% B:
      send webhook "invite_b"
"""
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)


async def test_events_after_entry_per_variant(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "nowhere")
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    jid = unique("referral")

    def enter(user: str, variant: str) -> None:
        seen = ingest_event(
            store, event_id=f"seen-{user}", name="seen", identifiers={"member_id": user}, occurred_at=T0
        )
        uid = seen.user_id
        run_key = f"journey:{jid}:{uid}:1"
        store.transact(
            lambda s: runs.begin(
                s,
                store,
                run_key=run_key,
                journey_id=jid,
                version=1,
                user_id=uid,
                mode="always",
                cooldown_seconds=None,
                now=T0 + timedelta(hours=1),
            )
        )
        runs.record_steps(
            store,
            [
                StepRecord(
                    run_key=run_key,
                    seq=1,
                    journey_id=jid,
                    version=1,
                    user_id=uid,
                    node_id="split",
                    kind="split",
                    outcome=f"variant:{variant}",
                    variant=variant,
                    at=T0 + timedelta(hours=1),
                )
            ],
        )

    def joined(user: str, n: int, at: datetime) -> None:
        for i in range(n):
            ingest_event(
                store,
                event_id=f"join-{user}-{i}-{at:%H}",
                name="friend_joined",
                identifiers={"member_id": user},
                occurred_at=at,
            )

    for user, variant in (("a1", "A"), ("a2", "A"), ("b1", "B"), ("b2", "B"), ("b3", "B")):
        enter(user, variant)
    joined("a1", 3, T0 + timedelta(hours=2))
    joined("a2", 2, T0 + timedelta(hours=3))
    joined("b1", 1, T0 + timedelta(hours=2))
    joined("b2", 4, T0)  # before entering: not this journey's doing
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        r = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=auth())
        assert r.status_code == 201, r.text
        stats = (await http.get(f"/v1/journeys/{jid}/stats?per_entry=friend_joined", headers=auth())).json()
        plain = (await http.get(f"/v1/journeys/{jid}/stats", headers=auth())).json()
        bad = await http.get(f"/v1/journeys/{jid}/stats?per_entry=no%20spaces", headers=auth())
    store.dispose()
    per = stats["per_entry"]
    assert (per["event"], per["entered"], per["events"]) == ("friend_joined", 5, 6)
    assert per["per_entry"] == 1.2
    rows = {v["variant"]: (v["entered"], v["events"], v["per_entry"]) for v in per["variants"]}
    assert rows == {"A": (2, 5, 2.5), "B": (3, 1, round(1 / 3, 6))}
    assert plain["per_entry"] is None
    assert bad.status_code == 422
