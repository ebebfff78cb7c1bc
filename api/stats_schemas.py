"""Response models of ``GET /v1/journeys/{id}/stats``: a journey's numbers
per node, per variant (with significance), over time and after a send.
Built from ``engine.stats``/``engine.experiments``/``engine.node_numbers``
results (``from_attributes``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from api.schemas import Out


class NodeStatsOut(Out):
    node_id: str
    entered: int
    passed: int
    waiting: int | None = Field(description="Runs waiting at this node now (Temporal visibility); null if unavailable")
    waited: int = Field(description="Runs that ever waited here")
    sent: int
    pending: int
    suppressed: int
    failed: int
    retrying: int = Field(description="Sends whose last attempt failed and that are being retried now")
    outcomes: dict[str, int]
    clicks: int = Field(0, description="Clicks on this node's tracked links (previews and crawlers not counted)")
    clicked: int = Field(0, description="This node's messages clicked at least once")
    click_rate: float = Field(0.0, description="clicked / messages sent (sent + pending)")


class Significance(Out):
    against: str
    z: float | None
    p_value: float | None
    significant: bool = Field(description="p < 0.05")


class VariantOut(Out):
    variant: str | None
    entered: int
    converted: int = Field(description="Runs whose user did the goal's event in its window after entering")
    conversion_rate: float
    tests: list[Significance]
    clicks: int = Field(0, description="Clicks on the journey's tracked links by this variant's runs")
    clicked: int = Field(0, description="Runs that clicked a tracked link at least once")
    click_rate: float = Field(0.0, description="clicked / entered, beside conversion_rate")


class SummaryOut(Out):
    entered: int
    active: int
    refused: int
    converted: int
    outcomes: dict[str, int]


class GoalOut(BaseModel):
    """Conversions judged from the stored events: the run's user did the
    goal's event within its window after entering, whether or not the run
    has ended (``engine.goals``)."""

    event: str | None
    converted: int
    conversion_rate: float


class BucketOut(Out):
    start: datetime
    end: datetime
    entered: int
    sent: int
    suppressed: int
    failed: int
    converted: int


class ReadoutVariantOut(Out):
    variant: str | None = Field(description="The split variant; null for runs outside any split")
    entered: int
    sent: int
    converted: int
    conversion_rate: float


class ReadoutOut(Out):
    offset: str
    at: datetime
    complete: bool = Field(description="False while the readout time is still in the future")
    entered: int
    sent: int
    converted: int = Field(description="Runs whose user did the goal's event in its window, by this time")
    conversion_rate: float
    variants: list[ReadoutVariantOut] = Field(default_factory=list, description="The same numbers per split variant")


class PerEntryVariantOut(Out):
    variant: str | None
    entered: int
    events: int
    per_entry: float = Field(description="events / entered")


class PerEntryOut(Out):
    """``?per_entry=<event>``: that event counted per entered user, after
    entry — a referral's new users won per user reached (above 1 it grows)."""

    event: str
    entered: int
    events: int
    per_entry: float
    variants: list[PerEntryVariantOut]


class SplitTestOut(BaseModel):
    node_id: str
    version: int
    sample_percent: float
    window_seconds: int
    metric: str = Field(description="goal, or event (with `event`)")
    event: str | None
    otherwise: str = Field(description="the variant taken when none wins significantly")
    started_at: datetime | None = Field(description="when the first run reached the split; null: none yet")
    ends_at: datetime | None
    winner: str | None
    decided_by: str | None = Field(description="test or operator")
    decided_at: datetime | None
    reason: str | None
    numbers: dict[str, Any] | None = Field(description="per variant: test runs and how many met the metric")
    leader: str | None = Field(None, description="while it runs: the variant that would win if it ended now")
    so_far: str | None = Field(None, description="while it runs: why (significance, sample size)")


class StatsOut(BaseModel):
    journey_id: str
    version: int | None
    summary: SummaryOut
    goal: GoalOut
    nodes: list[NodeStatsOut]
    variants: list[VariantOut]
    series: list[BucketOut] | None = None
    readouts: list[ReadoutOut] | None = None
    per_entry: PerEntryOut | None = None
    split_tests: list[SplitTestOut] = Field(default_factory=list, description="The version's split tests")
    counts_age_seconds: float | None = Field(
        None,
        description="How old the oldest of the counts is, when the journey is big enough that they are retaken"
        " in the background rather than on every call; null: counted for this answer",
    )
    warnings: list[str] = Field(default_factory=list)
