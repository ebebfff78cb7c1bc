"""Pydantic models in and out of the API (the OpenAPI schema is built from them).

Strings are bounded and free of control characters, numbers are bounded and
finite: whatever a client sends either fits the database or is refused with
a 422 here, before any work is done.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from dsl.limits import MAX_SOURCE_CHARS
from engine.channels.base import ADDRESS_KIND
from engine.store.models import IDENTITY_KINDS, IdentityKind

# ---------------------------------------------------------------- primitives

JourneyIdStr = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")]
UserIdStr = Annotated[str, StringConstraints(pattern=r"^[^\s\x00-\x1f\x7f]{1,64}$")]
NameStr = Annotated[str, StringConstraints(pattern=r"^[^\s\x00-\x1f\x7f\"]{1,128}$")]
TextStr = Annotated[str, StringConstraints(max_length=20_000, pattern=r"^[^\x00]*$")]
ShortText = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00-\x08\x0b-\x1f\x7f]*$")]
assert set(IdentityKind.__args__) == set(IDENTITY_KINDS)  # type: ignore[attr-defined]
Channel = Literal["wecom", "wecom_group", "official_account", "miniprogram", "push", "sms", "email", "webhook"]
assert set(Channel.__args__) == set(ADDRESS_KIND)  # type: ignore[attr-defined]
IdentityValue = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$")]


def _finite_json(value: Any, depth: int = 0) -> Any:
    """Event properties and attributes go into JSON columns and back out in
    responses: NaN/Infinity would be unserialisable, deep nesting is abuse."""
    if depth > 16:
        raise ValueError("nested too deeply (more than 16 levels)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite (no NaN or Infinity)")
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("strings must not contain NUL characters")
    if isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                raise ValueError("keys must not contain NUL characters")
            _finite_json(v, depth + 1)
    elif isinstance(value, list):
        for v in value:
            _finite_json(v, depth + 1)
    return value


JsonDict = Annotated[dict[str, Any], AfterValidator(_finite_json)]


def _stringify_id(value: Any) -> Any:
    """Segment libraries send ids as strings, some hand-written clients as numbers."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    return value


SegmentId = Annotated[
    str,
    BeforeValidator(_stringify_id),
    StringConstraints(min_length=1, max_length=255, pattern=r"^[^\x00-\x1f\x7f]+$"),
]
MessageId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")]


class Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


# ---------------------------------------------------------------- errors


class ErrorItem(BaseModel):
    code: str
    severity: Literal["error", "warning"] = "error"
    message: str
    line: int | None = None
    column: int | None = None
    hint: str | None = None
    field: str | None = None


class ProblemOut(BaseModel):
    """RFC 7807 problem details (``application/problem+json``)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ErrorItem] | None = None


# ---------------------------------------------------------------- journeys

API_SOURCE_CHARS = 2 * MAX_SOURCE_CHARS
"""The longest journey text a request may carry. Over ``MAX_SOURCE_CHARS``
and up to this, the language answers (E130, with its line and caret, in the
same ``errors`` list as every other mistake); only beyond it does validation
refuse the body with a generic 422."""


class DeployIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Twice the language's bound: a text over MAX_SOURCE_CHARS reaches the
    # parser and gets its E130 with a line and caret; only one far bigger is
    # refused here, unread.
    source: Annotated[str, StringConstraints(min_length=1, max_length=API_SOURCE_CHARS)] = Field(
        description="Journey text in the journeys language"
    )
    id: JourneyIdStr | None = Field(
        None,
        description="Journey id; defaults to a slug of the journey's name. Redeploying the same id adds a version.",
    )
    check_references: bool = Field(
        False, description="Also refuse unknown templates and coupon pools (they must exist in the store)"
    )
    draft: bool = Field(
        False,
        description="A new journey starts as a draft (admits nobody until `POST …/resume`); "
        "redeploying keeps the status whatever this says",
    )


class VersionOut(Out):
    version: int
    hash: str
    status: str
    created_at: datetime


class VersionSourceOut(VersionOut):
    journey_id: str
    source: str


class JourneyOut(Out):
    id: str
    name: str
    status: Literal["draft", "active", "paused", "stopped", "archived"]
    current_version: int | None
    hash: str | None = None
    entry: str | None = Field(None, description="api, event or audience")
    entry_event: str | None = None


class JourneyDetail(JourneyOut):
    description: str | None = None
    source: str
    versions: list[VersionOut]
    warnings: list[ErrorItem]


class DeployOut(BaseModel):
    journey: JourneyDetail
    version: int
    created: bool = Field(description="False when the text compiled to the current version's hash (no new version)")
    warnings: list[ErrorItem]


class DiffOut(BaseModel):
    journey_id: str
    from_version: int
    to_version: int
    diff: str


class StatusOut(BaseModel):
    id: str
    status: str
    previous_status: str
    note: str


class StopOut(BaseModel):
    journey_id: str
    status: str
    job_id: str | None
    method: Literal["batch", "iterate", "queued", "none"] = Field(
        description="batch: a Temporal batch job; iterate: cancelled one by one; queued: Temporal refused, "
        "retried in the background"
    )
    state: str
    total: int | None = None
    completed: int | None = None
    failed: int | None = None
    error: str | None = Field(None, description="Why a queued stop has not started yet")
    running_now: int | None = Field(None, description="Running runs of this journey according to visibility")


# ---------------------------------------------------------------- runs


class IdentityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: IdentityKind
    value: IdentityValue


class StartRunsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: UserIdStr | None = None
    user_ids: Annotated[list[UserIdStr], Field(max_length=1000)] = Field(default_factory=list)
    identities: Annotated[list[IdentityIn], Field(max_length=1000)] = Field(
        default_factory=list, description="Users by identifier (resolved, created if unknown)"
    )


class StartedRun(BaseModel):
    user_id: str
    workflow_id: str
    run_id: str | None
    started: bool | None = Field(None, description="False when a run of this journey was already running for the user")


class StartRunsOut(BaseModel):
    journey_id: str
    version: int
    runs: list[StartedRun]


class RunOut(Out):
    run_key: str
    workflow_id: str
    journey_id: str
    version: int
    user_id: str
    admitted: bool
    reason: str | None
    entered_at: datetime
    ended_at: datetime | None
    outcome: str | None
    end_reason: str | None
    variant: str | None
    converted_at: datetime | None


class CancelOut(BaseModel):
    journey_id: str
    user_id: str
    workflow_id: str
    cancelled: bool
    detail: str


# ---------------------------------------------------------------- users


class TagOut(Out):
    tag: str
    source: str
    added_at: datetime


class ConsentOut(Out):
    channel: str
    opted_out: bool
    source: str | None
    updated_at: datetime


class UserOut(Out):
    id: str
    created_at: datetime
    updated_at: datetime
    attributes: dict[str, Any]
    timezone: str | None
    stage: str | None
    rfm: str | None
    identities: dict[str, list[str]]
    tags: list[TagOut]
    consents: list[ConsentOut]
    merged_ids: list[str]


class LookupOut(BaseModel):
    user_id: str


class TagsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tags: Annotated[list[NameStr], Field(min_length=1, max_length=100)]
    source: NameStr = "api"


class TagsOut(BaseModel):
    user_id: str
    changed: list[str]
    tags: list[str]


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: NameStr | None = None


class TimelineItemOut(Out):
    at: datetime
    kind: str = Field(description="step, delivery or coupon")
    journey_id: str | None
    version: int | None = Field(None, description="The journey version the run was on (null for coupons)")
    node_id: str | None
    summary: str
    status: str | None = Field(None, description="A step's outcome, a send's status")
    reason: str | None = Field(None, description="Why: a suppression's reason, a refused entry's")
    detail: dict[str, Any]


# ---------------------------------------------------------------- templates and pools


class TemplateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    body: Annotated[TextStr, StringConstraints(min_length=1)]
    channel_bodies: dict[Channel, TextStr] = Field(default_factory=dict)
    subject: ShortText | None = None
    transactional: bool = False


class TemplateIn(TemplateBody):
    name: NameStr


class TemplateOut(Out):
    name: str
    body: str
    channel_bodies: dict[str, str]
    subject: str | None
    transactional: bool
    version: int


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    channel: Channel | None = None
    event: JsonDict | None = Field(None, description="Properties of the event the message would answer")
    coupon: JsonDict | None = Field(None, description='A coupon as issued, e.g. {"code": "JC123", "amount": 10}')


class PreviewOut(BaseModel):
    template: str
    version: int
    user_id: str
    channel: str | None
    subject: str | None
    body: str


class PoolTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stock: Annotated[int, Field(ge=0, le=1_000_000_000)]
    per_user_limit: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    value: JsonDict = Field(default_factory=dict)
    expires_after_seconds: Annotated[int, Field(ge=1, le=100 * 365 * 86400)] | None = None


class PoolIn(PoolTerms):
    name: NameStr


class StockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Annotated[int, Field(ge=-1_000_000_000, le=1_000_000_000)]


class PoolOut(Out):
    name: str
    stock: int
    issued: int
    per_user_limit: int
    value: dict[str, Any]
    expires_after_seconds: int | None


# ---------------------------------------------------------------- health


class HealthOut(BaseModel):
    status: str


class ReadyOut(BaseModel):
    status: str
    database: bool
    temporal: bool
