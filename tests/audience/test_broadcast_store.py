"""The broadcasts progress row and the runs-table lookups, on every backend."""

from __future__ import annotations

from datetime import timedelta

from engine import broadcasts, runs
from engine.store import Store
from engine.store.models import Run
from tests.audience.support import NOW


def _begin(store: Store, bid: str = "b1") -> None:
    broadcasts.begin(store, bid, journey_id="j", version=3, trigger="schedule", page_size=10, now=NOW)


def test_begin_is_idempotent_and_pages_commit_once(store: Store) -> None:
    _begin(store)
    first = broadcasts.commit_page(
        store, "b1", pages_before=0, cursor="u09", scanned=10, matched=4, entered=3, skipped=1, done=False, now=NOW
    )
    assert (first.pages, first.cursor, first.matched, first.entered, first.skipped) == (1, "u09", 4, 3, 1)
    # the same page again (a retry whose first answer was lost) changes nothing
    again = broadcasts.commit_page(
        store, "b1", pages_before=0, cursor="u09", scanned=10, matched=4, entered=3, skipped=1, done=False, now=NOW
    )
    assert again == first
    # begin for a known broadcast returns it as it is (a resumed broadcast)
    broadcasts.begin(store, "b1", journey_id="j", version=9, trigger="api", page_size=99, now=NOW)
    assert broadcasts.get(store, "b1") == first
    last = broadcasts.commit_page(
        store,
        "b1",
        pages_before=1,
        cursor="u12",
        scanned=3,
        matched=1,
        entered=1,
        skipped=0,
        done=True,
        now=NOW + timedelta(seconds=5),
    )
    assert (last.status, last.pages, last.scanned, last.entered, last.version, last.page_size) == (
        "completed",
        2,
        13,
        4,
        3,
        10,
    )
    assert last.finished_at == NOW + timedelta(seconds=5)
    assert broadcasts.finish(store, "b1", status="halted", reason="late", now=NOW).status == "completed"


def test_listing_newest_first(store: Store) -> None:
    for i, bid in enumerate(["a", "b", "c"]):
        broadcasts.begin(store, bid, journey_id="j", version=1, trigger="api", page_size=5, now=NOW + timedelta(i))
    broadcasts.begin(store, "other", journey_id="k", version=1, trigger="api", page_size=5, now=NOW)
    assert [b.broadcast_id for b in broadcasts.list_for_journey(store, "j")] == ["c", "b", "a"]
    assert [b.broadcast_id for b in broadcasts.list_for_journey(store, "j", limit=1)] == ["c"]


def test_entries_are_found_by_their_trigger_marker(store: Store) -> None:
    def enter(run_key: str, user: str, bid: str | None, mode: str = "once") -> None:
        trigger = {"id": broadcasts.marker(bid), "name": "audience"} if bid else {"id": "e1", "name": "clicked"}
        store.transact(
            lambda s: runs.begin(
                s,
                store,
                run_key=run_key,
                journey_id="j",
                version=1,
                user_id=user,
                mode=mode,
                cooldown_seconds=None,
                now=NOW,
                trigger_event=trigger,
            )
        )

    enter("r1", "u1", "b1")
    enter("r2", "u2", "b1")
    enter("r3", "u1", "b2")  # refused: reentry once
    enter("r4", "u3", None)  # an event entry
    assert broadcasts.entered_by(store, "j", "b1", ["u1", "u2", "u3", "u4"]) == {"u1", "u2"}
    assert broadcasts.entered_by(store, "j", "b2", ["u1", "u2"]) == {"u1"}
    assert broadcasts.entered_by(store, "other", "b1", ["u1"]) == set()
    assert broadcasts.entry_outcomes(store, "j", "b1") == {"admitted": 2, "refused": 0}
    assert broadcasts.entry_outcomes(store, "j", "b2") == {"admitted": 0, "refused": 1}


def test_entries_stored_without_a_trigger_id_are_found_by_their_trigger_event(store: Store) -> None:
    """Runs written before ``trigger_event_id`` was kept carry only the JSON."""
    with store.session() as s:
        for key, user, trigger in (
            ("old1", "u1", {"id": broadcasts.marker("b1"), "name": "audience"}),
            ("old2", "u2", {"id": "e1", "name": "clicked"}),
        ):
            s.add(
                Run(
                    run_key=key,
                    journey_id="j",
                    version=1,
                    user_id=user,
                    admitted=True,
                    entered_at=NOW,
                    trigger_event=trigger,
                    trigger_event_id=None,
                )
            )
    assert broadcasts.entered_by(store, "j", "b1", ["u1", "u2"]) == {"u1"}
