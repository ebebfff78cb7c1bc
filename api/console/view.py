"""What the console adds to engine reads to draw a page: the diagram's
wording and zero badges, the node panel's JSON, node labels on a user's
timeline (``engine.timeline``, worded as the diagram of the version each
run was on)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dsl.ir import Journey
from dsl.render import END_ID, ENTRY_ID, build_diagram
from engine import queries
from engine.journey_cache import JourneyCache
from engine.store import Store
from engine.timeline import TimelineItem, user_timeline_page
from engine.views import DeliveryRow

log = logging.getLogger("journeys.console")

# The badges every node shows, in this order (``dsl.render`` draws them).
COUNT_KEYS = ("entered", "waiting", "sent", "suppressed")
PANEL_LIMIT = 50
PANEL_MAX = 200  # the most waiting users / deliveries one panel page lists (``?limit=``)
# a page of the user's timeline; "Older" pages on (bench/store_bench.py: the
# template's render is most of the page's time, ~0.45 s for 300 items loaded)
TIMELINE_PAGE = 100


def zero_counts(journey: Journey) -> dict[str, dict[str, int]]:
    """Zeros for every node, so the SVG has a count element per node and key
    that the page's polling fills in place."""
    return {n.id: dict.fromkeys(COUNT_KEYS, 0) for n in build_diagram(journey).nodes}


def node_labels(journey: Journey) -> dict[str, str]:
    """Node id → the diagram's wording (``send wecom "welcome"`` → 发送…)."""
    labels = {n.id: n.label for n in build_diagram(journey).nodes}
    labels.setdefault("entry", labels.get(ENTRY_ID, "Entry"))
    labels.setdefault("end", labels.get(END_ID, "End"))
    return labels


@dataclass
class NodePanel:
    journey_id: str
    node_id: str
    label: str
    waiting_source: str  # "temporal" | "store"
    waiting: list[str] = field(default_factory=list)
    deliveries: list[DeliveryRow] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)
    failed: int = 0  # failed sends of the node (of the version): what a replay would retry
    can_replay: bool = False  # the signed-in key may replay them (operators: a replay sends messages)
    split_test: dict[str, Any] | None = None  # a split test's state (api.routes.splits), for its node
    can_operate: bool = False  # may pick a split test's winner
    waiting_next: str | None = None  # ``?waiting_cursor=`` of the next page of who waits; None on the last
    deliveries_next: str | None = None  # ``?deliveries_cursor=`` of the next page of deliveries

    def as_json(self) -> dict[str, Any]:
        return {
            "journey_id": self.journey_id,
            "node_id": self.node_id,
            "label": self.label,
            "waiting_source": self.waiting_source,
            "waiting": self.waiting,
            "deliveries": [
                {
                    "at": d.at.isoformat(),
                    "user_id": d.user_id,
                    "channel": d.channel,
                    "template": d.template,
                    "status": d.status,
                    "reason": d.reason,
                }
                for d in self.deliveries
            ],
            "outcomes": self.outcomes,
            "failed": self.failed,
            "can_replay": self.can_replay,
            "split_test": self.split_test,
            "can_operate": self.can_operate,
            "waiting_next": self.waiting_next,
            "deliveries_next": self.deliveries_next,
        }


@dataclass(frozen=True)
class TimelineRow:
    item: TimelineItem
    node_label: str | None


def user_timeline(
    store: Store, cache: JourneyCache, user_id: str, limit: int = TIMELINE_PAGE, until: datetime | None = None
) -> tuple[list[TimelineRow], datetime | None]:
    """A page of the user's timeline, newest first, each entry with its
    node's label; and the ``until`` of the older page (None when there is
    none)."""
    items, older = user_timeline_page(store, user_id, limit=limit, until=until)
    labels: dict[tuple[str, int | None], dict[str, str]] = {}

    def label(item: TimelineItem) -> str | None:
        if not item.journey_id or not item.node_id:
            return None
        key = (item.journey_id, item.version)
        if key not in labels:
            labels[key] = {}
            try:
                info = queries.get_journey(store, item.journey_id)
                deployed = cache.pinned(info, item.version) if info else None
                if deployed is not None:
                    labels[key] = node_labels(deployed.ir)
            except Exception:  # noqa: BLE001 - wording is a courtesy; the ids still show
                log.debug("labels for %s failed", key, exc_info=True)
        return labels[key].get(item.node_id)

    return [TimelineRow(i, label(i)) for i in reversed(items)], older
