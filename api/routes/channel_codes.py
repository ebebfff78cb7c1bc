"""Channel codes: ``/v1/channel-codes`` (create, list with numbers, read,
change, archive) and ``/v1/channel-codes/{id}/qr.png``.

Creating a code creates it at the vendor (``engine.channel_codes``): a
WeCom "contact me" code or an Official Account permanent QR code whose
state / scene is the placement. Reads are a viewer's; making, changing and
archiving an operator's. What can go wrong answers 4xx with the reason: 409
a placement already taken or a welcome journey that cannot welcome, 422 a
bound (placement length per vendor, tags, staff) or the vendor's refusal
(its errcode in the detail), 409 a vendor not configured; a vendor that
cannot be reached is a 502 and nothing is kept but the unfinished code,
which the same request resumes.
"""

from __future__ import annotations

import asyncio
from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints, computed_field

from api.deps import Operator, SettingsDep, StoreDep, viewer
from api.problems import Problem, not_found
from api.schemas import JourneyIdStr, NameStr, Out, ProblemOut, ShortText
from api.settings import ApiSettings
from engine import channel_codes, queries
from engine.channel_codes import UNSET, CodeError, CodeInfo, Numbers
from engine.journey_cache import JourneyCache
from engine.store import Store

router = APIRouter(prefix="/v1/channel-codes", tags=["channel codes"], dependencies=[Depends(viewer)])

PlacementStr = Annotated[str, StringConstraints(min_length=1, max_length=64)]
StaffId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")]
GroupStr = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,128}$")]
Tags = Annotated[list[NameStr], Field(max_length=channel_codes.MAX_TAGS)]

_STATUS = {
    "taken": 409,
    "invalid": 422,
    "not-configured": 409,
    "vendor-refused": 422,
    "vendor-unavailable": 502,
    "not-found": 404,
    "creating": 409,
}
IMAGE_HEADERS = {"Cache-Control": "private, max-age=3600"}
VENDOR_DOWN = {
    502: {"model": ProblemOut, "description": "The vendor could not be reached (send the same request again)"}
}


class CodeIn(BaseModel):
    vendor: Literal["wecom", "official_account"]
    placement: PlacementStr = Field(description="The state (WeCom, ≤ 30) / scene_str (Official Account, ≤ 64)")
    name: ShortText | None = None
    tags: Tags = Field(default_factory=list, description="Added to whoever comes through it (source channel_code)")
    welcome_journey: JourneyIdStr | None = Field(default=None, description="An `entry api` journey started on a scan")
    group: GroupStr | None = Field(default=None, description="Codes compared side by side (variants of one card)")
    staff: Annotated[list[StaffId], Field(max_length=channel_codes.MAX_STAFF)] = Field(
        default_factory=list, description="WeCom: the staff userids the code adds the customer to"
    )


class CodePatch(BaseModel):
    name: ShortText | None = None
    tags: Tags | None = None
    welcome_journey: JourneyIdStr | None = None
    group: GroupStr | None = None
    clear: list[Literal["welcome_journey", "group"]] = Field(default_factory=list, description="Fields to empty")


class NumbersOut(Out):
    scans: int
    contacts: int = Field(description="People who became contacts through it (added the staff member, followed)")
    new_users: int = Field(description="People the store first met through it")
    people: int
    conversions: int = Field(description="People who paid (a payment event) after their first scan through it")
    conversion_rate: float | None
    revenue: float = Field(description="What those people paid since their first scan (the payments' amount)")


class DayOut(BaseModel):
    day: date
    scans: int
    contacts: int


class CodeOut(Out):
    id: str
    vendor: str
    placement: str
    name: str
    tags: list[str]
    welcome_journey: str | None
    group: str | None
    staff: list[str]
    status: str
    vendor_ref: str | None
    qr_url: str | None
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None
    numbers: NumbersOut = Field(default_factory=lambda: NumbersOut.model_validate(Numbers()))
    days: list[DayOut] | None = None
    timezone: str | None = None
    note: str | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def qr_png(self) -> str:
        """The QR image's address (drawn locally from ``qr_url``)."""
        return f"/v1/channel-codes/{self.id}/qr.png"


def _out(code: CodeInfo, numbers: Numbers | None, **extra: object) -> CodeOut:
    # the code's and its numbers' fields are read by name (``from_attributes``)
    return CodeOut.model_validate(code).model_copy(
        update={"numbers": NumbersOut.model_validate(numbers or Numbers()), **extra}
    )


def _problem(exc: CodeError) -> Problem:
    return Problem(_STATUS.get(exc.kind, 422), str(exc), kind=f"channel-code-{exc.kind}")


async def _code_or_404(store: Store, code_id: str) -> CodeInfo:
    code = await asyncio.to_thread(channel_codes.get, store, code_id)
    if code is None:
        raise not_found("channel code", code_id)
    return code


async def _check_welcome(store: Store, journey_id: str) -> None:
    """A welcome journey must exist and enter by API (an event journey
    starts on its own event; a code starting it too would race it)."""
    info = await asyncio.to_thread(queries.get_journey, store, journey_id)
    if info is None:
        raise Problem(409, f"welcome journey {journey_id!r} does not exist", kind="channel-code-welcome")
    deployed = await asyncio.to_thread(JourneyCache(store).current, info)
    if deployed is None or deployed.ir.entry.kind != "api":
        raise Problem(
            409,
            f"welcome journey {journey_id!r} must enter by API (entry api): a code starts it for whoever scans",
            kind="channel-code-welcome",
        )


async def _numbers(
    store: Store, settings: ApiSettings, codes: list[CodeInfo], since: datetime | None, until: datetime | None
) -> dict[str, Numbers]:
    return await asyncio.to_thread(
        channel_codes.numbers,
        store,
        settings.derived.payment_events,
        code_ids=[c.id for c in codes],
        since=since,
        until=until,
    )


@router.post(
    "", response_model=CodeOut, status_code=201, summary="Create a channel code at its vendor", responses=VENDOR_DOWN
)
async def create_code(body: CodeIn, store: StoreDep, settings: SettingsDep, _: Operator) -> CodeOut:
    try:
        channel_codes.check_placement(body.vendor, body.placement)
    except CodeError as exc:
        raise _problem(exc) from exc
    if body.vendor == "wecom" and not body.staff:
        raise Problem(422, "a WeCom code adds the customer to staff: name at least one staff userid in staff")
    if body.welcome_journey:
        await _check_welcome(store, body.welcome_journey)
    try:
        code = await asyncio.to_thread(
            channel_codes.reserve,
            store,
            vendor=body.vendor,
            placement=body.placement,
            name=body.name or body.placement,
            tags_=body.tags,
            welcome_journey=body.welcome_journey,
            group=body.group,
            staff=body.staff,
        )
        try:
            made = await channel_codes.register(settings.channels, code)
        except CodeError as exc:
            if exc.kind != "vendor-unavailable":  # refused: the placement is free again
                await asyncio.to_thread(channel_codes.forget_unfinished, store, code.id)
            raise
        code = await asyncio.to_thread(
            channel_codes.activate,
            store,
            code.id,
            vendor_ref=made.vendor_ref,
            qr_url=made.qr_url,
            image=made.image,
            image_type=made.image_type,
        )
    except CodeError as exc:
        raise _problem(exc) from exc
    return _out(code, None)


@router.get("", response_model=list[CodeOut], summary="Channel codes with their numbers (A/B side by side by group)")
async def list_codes(
    store: StoreDep,
    settings: SettingsDep,
    archived: bool = False,
    group: Annotated[GroupStr | None, Query()] = None,
    since: Annotated[AwareDatetime | None, Query(description="Count scans from this time")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Count scans before this time")] = None,
    limit: Annotated[int, Query(ge=1, le=2000, description="At most this many codes, oldest first")] = 500,
) -> list[CodeOut]:
    codes = await asyncio.to_thread(channel_codes.listing, store, archived=archived, group=group, limit=limit)
    numbers = await _numbers(store, settings, codes, since, until)
    return [_out(c, numbers.get(c.id)) for c in codes]


@router.get("/{code_id}", response_model=CodeOut, summary="One code, its numbers and scans per day")
async def read_code(
    code_id: str,
    store: StoreDep,
    settings: SettingsDep,
    days: Annotated[int, Query(ge=1, le=channel_codes.MAX_SERIES_DAYS)] = 30,
    tz: Annotated[str, Query(max_length=64)] = "Asia/Shanghai",
    since: Annotated[AwareDatetime | None, Query()] = None,
    until: Annotated[AwareDatetime | None, Query()] = None,
) -> CodeOut:
    code = await _code_or_404(store, code_id)
    try:
        per_day = await asyncio.to_thread(channel_codes.series, store, code.id, days=days, timezone=tz)
    except (KeyError, ValueError) as exc:
        raise Problem(422, f"unknown time zone {tz!r}", kind="bad-timezone") from exc
    numbers = await _numbers(store, settings, [code], since, until)
    return _out(
        code,
        numbers.get(code.id),
        days=[DayOut(day=d.day, scans=d.scans, contacts=d.contacts) for d in per_day.days],
        timezone=per_day.timezone,
    )


@router.patch("/{code_id}", response_model=CodeOut, summary="Change a code's name, tags, welcome journey or group")
async def change_code(code_id: str, body: CodePatch, store: StoreDep, settings: SettingsDep, _: Operator) -> CodeOut:
    code = await _code_or_404(store, code_id)
    if body.welcome_journey:
        await _check_welcome(store, body.welcome_journey)
    welcome = None if "welcome_journey" in body.clear else (body.welcome_journey or UNSET)
    group = None if "group" in body.clear else (body.group or UNSET)
    try:
        code = await asyncio.to_thread(
            channel_codes.update_code,
            store,
            code.id,
            name=body.name,
            tags_=body.tags,
            welcome_journey=welcome,
            group=group,
        )
    except CodeError as exc:
        raise _problem(exc) from exc
    numbers = await _numbers(store, settings, [code], None, None)
    return _out(code, numbers.get(code.id))


@router.delete(
    "/{code_id}",
    response_model=CodeOut,
    summary="Archive a code (a WeCom code's contact way is deleted)",
    responses=VENDOR_DOWN,
)
async def archive_code(code_id: str, store: StoreDep, settings: SettingsDep, _: Operator) -> CodeOut:
    code = await _code_or_404(store, code_id)
    note = None
    try:
        if code.status == "active":
            note = await channel_codes.unregister(settings.channels, code)
        code = await asyncio.to_thread(channel_codes.mark_archived, store, code.id)
    except CodeError as exc:
        raise _problem(exc) from exc
    numbers = await _numbers(store, settings, [code], None, None)
    return _out(code, numbers.get(code.id), note=note)


@router.get(
    "/{code_id}/qr.png",
    response_class=Response,
    summary="The code's QR image for printing",
    responses={200: {"content": {"image/png": {}}}, **VENDOR_DOWN},
)
async def code_qr(
    code_id: str,
    store: StoreDep,
    settings: SettingsDep,
    scale: Annotated[int, Query(ge=1, le=40, description="Pixels per module (Official Account codes)")] = 10,
) -> Response:
    code = await _code_or_404(store, code_id)
    try:
        data, kind = await channel_codes.qr_image(store, settings.channels, code, scale=scale)
    except CodeError as exc:
        raise _problem(exc) from exc
    return Response(
        data,
        media_type=kind,
        headers=IMAGE_HEADERS | {"Content-Disposition": f'inline; filename="{code.id}.png"'},
    )
