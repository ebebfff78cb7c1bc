"""The journey lifecycle, ``draft → active ⇄ paused → stopped → archived``,
is the catalog's: every legal move is made, every other refused with the
statuses named, and a refused move changes nothing."""

from __future__ import annotations

import itertools

import pytest

from engine import catalog, lifecycle
from engine.store import Store

LEGAL = {
    ("draft", "active"),
    ("active", "paused"),
    ("paused", "active"),
    ("active", "stopped"),
    ("paused", "stopped"),
    ("stopped", "archived"),
}
PAIRS = list(itertools.product(lifecycle.STATUSES, repeat=2))


def _journey_at(store: Store, journey_id: str, status: str) -> None:
    """Deploy a draft and walk it to ``status`` by legal moves only."""
    catalog.publish(store, journey_id, name=journey_id, source="…", ir={}, hash="h", draft=True)
    walk = {
        "draft": [],
        "active": ["active"],
        "paused": ["active", "paused"],
        "stopped": ["active", "stopped"],
        "archived": ["active", "stopped", "archived"],
    }[status]
    for step in walk:
        catalog.set_status(store, journey_id, step)
    assert catalog.get_version(store, journey_id) is not None
    assert next(j for j in catalog.list_journeys(store) if j.id == journey_id).status == status


@pytest.mark.parametrize(("current", "wanted"), PAIRS)
def test_every_move_is_made_or_refused_as_the_lifecycle_says(store: Store, current: str, wanted: str) -> None:
    jid = f"j-{current}-{wanted}"
    _journey_at(store, jid, current)
    if (current, wanted) in LEGAL or current == wanted:
        assert catalog.set_status(store, jid, wanted).status == wanted
        return
    with pytest.raises(lifecycle.IllegalTransition) as refused:
        catalog.set_status(store, jid, wanted)
    assert (refused.value.current, refused.value.wanted) == (current, wanted)
    assert refused.value.allowed == sorted(lifecycle.TRANSITIONS[current])
    assert f"is {current}" in str(refused.value) and f"cannot become {wanted}" in str(refused.value)
    assert next(j for j in catalog.list_journeys(store) if j.id == jid).status == current  # unchanged


def test_unknown_statuses_and_journeys(store: Store) -> None:
    _journey_at(store, "j", "active")
    with pytest.raises(ValueError, match="status must be one of"):
        catalog.set_status(store, "j", "running")
    with pytest.raises(KeyError):
        catalog.set_status(store, "nope", "paused")


def test_a_path_is_all_or_nothing(store: Store) -> None:
    _journey_at(store, "j", "paused")
    change = catalog.change_status(store, "j", lifecycle.path_to_archive("paused"))
    assert (change.previous, change.journey.status) == ("paused", "archived")
    _journey_at(store, "k", "draft")
    with pytest.raises(lifecycle.IllegalTransition):
        catalog.change_status(store, "k", lifecycle.path_to_archive("draft"))
    assert next(j for j in catalog.list_journeys(store) if j.id == "k").status == "draft"


def test_a_new_journey_is_active_unless_a_draft_and_redeploys_keep_the_status(store: Store) -> None:
    catalog.publish(store, "a", name="a", source="1", ir={}, hash="1")
    catalog.publish(store, "d", name="d", source="1", ir={}, hash="1", draft=True)
    catalog.set_status(store, "a", "paused")
    catalog.publish(store, "a", name="a", source="2", ir={}, hash="2", draft=True)
    catalog.publish(store, "d", name="d", source="2", ir={}, hash="2")
    status = {j.id: j.status for j in catalog.list_journeys(store)}
    assert status == {"a": "paused", "d": "draft"}


def test_an_archived_journey_takes_no_new_version(store: Store) -> None:
    _journey_at(store, "j", "archived")
    with pytest.raises(lifecycle.IllegalTransition):
        catalog.publish(store, "j", name="j", source="2", ir={}, hash="2")
    assert [v.version for v in catalog.list_versions(store, "j")] == [1]
