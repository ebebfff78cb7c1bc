"""Channel codes (渠道活码): named placements with their own QR code, the
tags a scan through one sets, and each code's numbers.

A poster in building A's lobby, a card in the parcel, a store counter: each
gets a code, so the scan says which placement brought the person
(scenarios 10 and 13). Creating a code creates the real thing at the
vendor:

- WeCom: ``POST /cgi-bin/externalcontact/add_contact_way`` (the
  customer-contact secret's token) with ``type`` 1 (one staff member) or 2
  (several), ``scene`` 2 (QR code), ``state`` = the placement (WeCom: at
  most 30 characters), ``skip_verify``; answers ``config_id`` and
  ``qr_code``, the URL of a *picture* of the code. WeCom does not give the
  code's content, so the picture is fetched once (bounded) and kept; it is
  what the API serves. An add through it comes back as the callback's
  ``State`` (``engine.callbacks.wecom``).
- Official Account: ``POST /cgi-bin/qrcode/create`` with ``action_name``
  ``QR_LIMIT_STR_SCENE`` (permanent) and ``scene_str`` = the placement (1 to
  64 characters); answers ``ticket`` and ``url``, the content of the code,
  which is drawn here with ``segno`` at any size for printing. A follow
  through it comes back as ``EventKey`` ``qrscene_<placement>``, a scan by a
  follower as ``SCAN`` with the placement.

The row is written (``creating``) before the vendor is called, so two
requests for one placement cannot both create it, and a create that died
after the vendor answered can be sent again (the same placement resumes
it). Archiving a WeCom code deletes its contact way (``del_contact_way``);
an Official Account's permanent code cannot be deleted, so scans of an
archived one still count and tag (the posters are still on the walls).

Through a code (``apply``, called by ``engine.callbacks.processing`` once
per callback under ``receipts.claim``): the person is resolved (created if
new), the code's tags are added with source ``channel_code``, and the scan
is recorded — all in one transaction, before the event is ingested, so a
journey entered on the event already sees the tags. ``numbers`` counts per
code: scans, new contacts (people who added the staff member or followed
through it), new users (people the store did not know), conversions
(scanned people who then paid: a ``derived.payment_events`` event at or
after their first scan through the code).
"""

from __future__ import annotations

import asyncio
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import segno
from sqlalchemy import and_, case, exists, func, insert, select
from sqlalchemy.orm import Session, aliased

from engine import identity, tags
from engine.callbacks import receipts
from engine.callbacks.mapping import JourneyEvent
from engine.channels._common import ChannelError
from engine.channels.config import ChannelsConfig
from engine.channels.wechat import WeChatClient
from engine.channels.wecom import WeComClient
from engine.store import Store
from engine.store.models import ChannelCode, ChannelCodeScan, Event, new_id
from engine.store.types import utc, utcnow

VENDORS = ("wecom", "official_account")
TAG_SOURCE = "channel_code"
MAX_PLACEMENT = {"wecom": 30, "official_account": 64}  # WeCom's state, WeChat's scene_str
PLACEMENT_PATTERN = re.compile(r"^[^\s\x00-\x1f\x7f\"'<>&/\\?#%]{1,64}$")
MAX_TAGS = 20
MAX_STAFF = 100
MAX_IMAGE_BYTES = 1_000_000
MAX_SERIES_DAYS = 92
IMAGE_TYPES = ("image/png", "image/jpeg")
_SCANS = ChannelCodeScan.__table__
_EVENTS = Event.__table__


class _Unset:
    """A field left as it is (``None`` clears it)."""


UNSET = _Unset()


class CodeError(Exception):
    """Why a code cannot be made or changed; ``kind`` says which way."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        # taken | invalid | not-configured | vendor-refused | vendor-unavailable | not-found | creating
        self.kind = kind


@dataclass(frozen=True)
class CodeInfo:
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
    has_image: bool
    created_at: datetime
    updated_at: datetime
    archived_at: datetime | None


def _info(row: ChannelCode) -> CodeInfo:
    return CodeInfo(
        id=row.id,
        vendor=row.vendor,
        placement=row.placement,
        name=row.name,
        tags=list(row.tags or []),
        welcome_journey=row.welcome_journey,
        group=row.group_name,
        staff=list(row.staff or []),
        status=row.status,
        vendor_ref=row.vendor_ref,
        qr_url=row.qr_url,
        has_image=row.qr_image is not None,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
        archived_at=utc(row.archived_at) if row.archived_at else None,
    )


def check_placement(vendor: str, placement: str) -> None:
    """The vendor's bound on the state / scene, and characters that stay
    plain in a URL, a tag and a printed label."""
    if vendor not in VENDORS:
        raise CodeError("invalid", f"vendor must be one of {', '.join(VENDORS)}")
    limit = MAX_PLACEMENT[vendor]
    if len(placement) > limit:
        raise CodeError("invalid", f"a {vendor} placement is at most {limit} characters (got {len(placement)})")
    if not PLACEMENT_PATTERN.match(placement):
        raise CodeError("invalid", "a placement has no spaces, quotes, slashes or control characters")


# ---------------------------------------------------------------- the store


def get(store: Store, code_id: str) -> CodeInfo | None:
    with store.read() as s:
        row = s.get(ChannelCode, code_id)
        return _info(row) if row is not None else None


def listing(store: Store, *, archived: bool = False, group: str | None = None, limit: int = 500) -> list[CodeInfo]:
    """Codes oldest first, at most ``limit``; archived ones only when asked."""
    with store.read() as s:
        q = select(ChannelCode).order_by(ChannelCode.created_at, ChannelCode.id).limit(limit)
        if not archived:
            q = q.where(ChannelCode.status != "archived")
        if group is not None:
            q = q.where(ChannelCode.group_name == group)
        return [_info(r) for r in s.scalars(q)]


def reserve(
    store: Store,
    *,
    vendor: str,
    placement: str,
    name: str,
    tags_: Sequence[str],
    welcome_journey: str | None,
    group: str | None,
    staff: Sequence[str],
) -> CodeInfo:
    """The ``creating`` row for a placement: new, or the one a create left
    unfinished (its fields replaced by these); a live code there is
    ``taken``."""
    check_placement(vendor, placement)

    def work(s: Session) -> CodeInfo:
        row = s.scalars(
            select(ChannelCode).where(ChannelCode.vendor == vendor, ChannelCode.placement == placement)
        ).first()
        now = utcnow()
        if row is not None and row.status != "creating":
            raise CodeError("taken", f"{vendor} placement {placement!r} is code {row.id} ({row.status})")
        if row is None:
            row = ChannelCode(id=new_id(), vendor=vendor, placement=placement, created_at=now, status="creating")
            s.add(row)
        row.name = name or placement
        row.tags = list(dict.fromkeys(tags_))
        row.welcome_journey = welcome_journey
        row.group_name = group
        row.staff = list(dict.fromkeys(staff))
        row.updated_at = now
        s.flush()
        return _info(row)

    return store.transact(work)


def activate(
    store: Store, code_id: str, *, vendor_ref: str, qr_url: str, image: bytes | None, image_type: str | None
) -> CodeInfo:
    def work(s: Session) -> CodeInfo:
        row = _row(s, code_id)
        row.status = "active"
        row.vendor_ref = vendor_ref
        row.qr_url = qr_url
        row.qr_image = image
        row.qr_image_type = image_type
        row.updated_at = utcnow()
        s.flush()
        return _info(row)

    return store.transact(work)


def forget_unfinished(store: Store, code_id: str) -> None:
    """The vendor refused the create: the placement is free again."""

    def work(s: Session) -> None:
        row = s.get(ChannelCode, code_id)
        if row is not None and row.status == "creating":
            s.delete(row)

    store.transact(work)


def update_code(
    store: Store,
    code_id: str,
    *,
    name: str | None = None,
    tags_: Sequence[str] | None = None,
    welcome_journey: str | None | _Unset = UNSET,
    group: str | None | _Unset = UNSET,
) -> CodeInfo:
    """Change what a code does (its placement and vendor are printed: they
    never change). ``UNSET`` leaves a nullable field as it is."""

    def work(s: Session) -> CodeInfo:
        row = _row(s, code_id)
        if name is not None:
            row.name = name
        if tags_ is not None:
            row.tags = list(dict.fromkeys(tags_))
        if not isinstance(welcome_journey, _Unset):
            row.welcome_journey = welcome_journey
        if not isinstance(group, _Unset):
            row.group_name = group
        row.updated_at = utcnow()
        s.flush()
        return _info(row)

    return store.transact(work)


def mark_archived(store: Store, code_id: str) -> CodeInfo:
    def work(s: Session) -> CodeInfo:
        row = _row(s, code_id)
        if row.status != "archived":
            row.status = "archived"
            row.archived_at = row.updated_at = utcnow()
        s.flush()
        return _info(row)

    return store.transact(work)


def image(store: Store, code_id: str) -> tuple[bytes, str] | None:
    """The stored picture (WeCom codes) and its content type."""
    with store.read() as s:
        row = s.get(ChannelCode, code_id)
        if row is None or row.qr_image is None:
            return None
        return bytes(row.qr_image), row.qr_image_type or "image/png"


def keep_image(store: Store, code_id: str, data: bytes, content_type: str) -> None:
    def work(s: Session) -> None:
        row = _row(s, code_id)
        row.qr_image, row.qr_image_type, row.updated_at = data, content_type, utcnow()

    store.transact(work)


def _row(s: Session, code_id: str) -> ChannelCode:
    row = s.get(ChannelCode, code_id)
    if row is None:
        raise CodeError("not-found", f"channel code {code_id!r} not found")
    return row


# ---------------------------------------------------------------- the vendors


@dataclass(frozen=True)
class Registered:
    vendor_ref: str  # WeCom config_id / OA ticket
    qr_url: str
    image: bytes | None = None
    image_type: str | None = None


def _vendor_error(vendor: str, exc: ChannelError) -> CodeError:
    kind = "vendor-unavailable" if exc.retryable else "vendor-refused"
    return CodeError(kind, f"{vendor}: {exc}")


async def register(config: ChannelsConfig, code: CodeInfo, *, http: httpx.AsyncClient | None = None) -> Registered:
    """Create the code at its vendor (module doc); ``CodeError`` when the
    vendor is not configured, refuses, or cannot be reached."""
    if code.vendor == "wecom":
        cfg = config.wecom
        if not cfg.configured:
            raise CodeError("not-configured", "WeCom is not configured (channels.wecom.corp_id and corp_secret)")
        if not code.staff:
            raise CodeError("invalid", "a WeCom code adds the customer to staff: name at least one staff userid")
        assert cfg.corp_id is not None and cfg.corp_secret is not None
        api = WeComClient(
            cfg.base_url, cfg.corp_id, cfg.corp_secret.get_secret_value(), client=http, timeout_s=cfg.timeout_s
        )
        try:
            payload = await api.call(
                "cgi-bin/externalcontact/add_contact_way",
                {
                    "type": 1 if len(code.staff) == 1 else 2,
                    "scene": 2,
                    "remark": code.name[:30],
                    "skip_verify": True,
                    "state": code.placement,
                    "user": code.staff,
                },
            )
        except ChannelError as exc:
            raise _vendor_error("wecom", exc) from exc
        finally:
            await api.aclose()
        config_id, picture = str(payload.get("config_id") or ""), str(payload.get("qr_code") or "")
        if not config_id or not picture:
            raise CodeError("vendor-unavailable", "wecom: add_contact_way answered without config_id or qr_code")
        try:
            data, kind = await fetch_image(picture, http=http, timeout_s=cfg.timeout_s)
        except CodeError:
            data, kind = None, None  # the code exists; its picture is fetched again when asked for
        return Registered(config_id, picture, data, kind)
    cfg_oa = config.official_account
    if not cfg_oa.configured:
        raise CodeError(
            "not-configured", "the Official Account is not configured (channels.official_account.app_id, app_secret)"
        )
    client = WeChatClient(cfg_oa, client=http)
    try:
        payload = await client.call(
            "cgi-bin/qrcode/create",
            {"action_name": "QR_LIMIT_STR_SCENE", "action_info": {"scene": {"scene_str": code.placement}}},
        )
    except ChannelError as exc:
        raise _vendor_error("official_account", exc) from exc
    finally:
        await client.aclose()
    ticket, url = str(payload.get("ticket") or ""), str(payload.get("url") or "")
    if not ticket or not url:
        raise CodeError("vendor-unavailable", "official_account: qrcode/create answered without ticket or url")
    return Registered(ticket, url)


async def unregister(config: ChannelsConfig, code: CodeInfo, *, http: httpx.AsyncClient | None = None) -> str:
    """Take the code down at its vendor where that exists; what happened."""
    if code.vendor != "wecom" or not code.vendor_ref:
        return "an Official Account's permanent QR code cannot be deleted; its scans keep counting"
    cfg = config.wecom
    if not cfg.configured:
        raise CodeError("not-configured", "WeCom is not configured (channels.wecom.corp_id and corp_secret)")
    assert cfg.corp_id is not None and cfg.corp_secret is not None
    api = WeComClient(
        cfg.base_url, cfg.corp_id, cfg.corp_secret.get_secret_value(), client=http, timeout_s=cfg.timeout_s
    )
    try:
        await api.call("cgi-bin/externalcontact/del_contact_way", {"config_id": code.vendor_ref})
    except ChannelError as exc:
        if exc.retryable:
            raise _vendor_error("wecom", exc) from exc
        return f"WeCom did not delete the contact way ({exc}); it is archived here"
    finally:
        await api.aclose()
    return "the WeCom contact way is deleted"


async def fetch_image(url: str, *, http: httpx.AsyncClient | None = None, timeout_s: float = 10.0) -> tuple[bytes, str]:
    """The vendor's QR picture, at most ``MAX_IMAGE_BYTES``, PNG or JPEG."""
    if not url.startswith(("https://", "http://")):
        raise CodeError("vendor-refused", "the QR picture's URL is not http(s)")
    own = http is None
    client = http or httpx.AsyncClient(timeout=timeout_s)
    try:
        async with client.stream("GET", url, timeout=timeout_s) as response:
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if response.status_code != 200 or kind not in IMAGE_TYPES:
                raise CodeError("vendor-unavailable", f"the QR picture answered HTTP {response.status_code} {kind}")
            parts: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    raise CodeError("vendor-unavailable", f"the QR picture is larger than {MAX_IMAGE_BYTES} bytes")
                parts.append(chunk)
            return b"".join(parts), kind
    except httpx.HTTPError as exc:
        raise CodeError("vendor-unavailable", f"the QR picture could not be fetched: {exc!r}") from exc
    finally:
        if own:
            await client.aclose()


async def qr_image(store: Store, config: ChannelsConfig, code: CodeInfo, *, scale: int = 10) -> tuple[bytes, str]:
    """The code's QR as image bytes and type: drawn here from the Official
    Account's URL, or WeCom's picture as fetched (fetched again, and kept,
    if the first fetch at creation failed)."""
    if code.status == "creating" or not code.qr_url:
        raise CodeError("creating", f"channel code {code.id!r} is still being created at its vendor")
    if code.vendor == "official_account":
        return await asyncio.to_thread(qr_png, code.qr_url, scale=scale), "image/png"
    stored = await asyncio.to_thread(image, store, code.id)
    if stored is not None:
        return stored
    data, kind = await fetch_image(code.qr_url, timeout_s=config.wecom.timeout_s)
    await asyncio.to_thread(keep_image, store, code.id, data, kind)
    return data, kind


def qr_png(content: str, *, scale: int = 10, border: int = 4) -> bytes:
    """A PNG of the QR code encoding ``content`` (error correction M, which
    survives a crease in a parcel card), drawn here: no network."""
    qr = segno.make_qr(content, error="m")
    out = io.BytesIO()
    qr.save(out, kind="png", scale=scale, border=border)
    return out.getvalue()


# ---------------------------------------------------------------- through a code


def codes_for(store: Store, vendor: str, placements: Iterable[str]) -> dict[str, CodeInfo]:
    """The codes (not being created) that own these placements, by placement."""
    wanted = sorted({p for p in placements if p})
    if not wanted:
        return {}
    with store.read() as s:
        rows = s.scalars(
            select(ChannelCode).where(
                ChannelCode.vendor == vendor, ChannelCode.placement.in_(wanted), ChannelCode.status != "creating"
            )
        )
        return {r.placement: _info(r) for r in rows}


def code_properties(code: CodeInfo) -> dict[str, Any]:
    """What an event through a code carries besides its placement."""
    props: dict[str, Any] = {"channel_code": code.id, "channel_code_name": code.name}
    if code.group:
        props["channel_code_group"] = code.group
    return props


@dataclass(frozen=True)
class Through:
    """One event of a callback that came through a code."""

    event_id: str
    event: JourneyEvent
    code: CodeInfo


def apply(store: Store, receipt_id: str, items: Sequence[Through]) -> bool:
    """Tag the people and record the scans, once per receipt (False: done
    already, by an earlier processing of it)."""
    if not items:
        return False

    def work(s: Session) -> bool:
        if not receipts.claim(s, receipt_id):
            return False
        for item in items:
            at = utc(item.event.occurred_at) if item.event.occurred_at else utcnow()
            pairs = identity.normalize_identifiers(item.event.identifiers)
            known = any(identity.lookup(s, kind, value) for kind, value in pairs)
            uid = identity.identify(s, pairs, now=at)
            if item.code.tags:
                tags.add_tags(s, uid, item.code.tags, source=TAG_SOURCE, now=at)
            if s.get(ChannelCodeScan, item.event_id) is None:
                s.execute(
                    insert(_SCANS).values(
                        event_id=item.event_id,
                        code_id=item.code.id,
                        user_id=uid,
                        kind=item.event.name[:64],
                        contact=item.event.contact,
                        new_user=not known,
                        at=at,
                    )
                )
        return True

    return store.transact(work)


# ---------------------------------------------------------------- numbers


@dataclass
class Numbers:
    scans: int = 0  # events through the code
    contacts: int = 0  # people who became contacts through it (added staff, followed)
    new_users: int = 0  # people the store first met through it
    people: int = 0  # distinct people who came through it
    conversions: int = 0  # of those, people who paid at or after their first scan through it
    revenue: float = 0.0  # what they paid since (the payments' ``amount``): the code's contribution

    @property
    def conversion_rate(self) -> float | None:
        return round(self.conversions / self.people, 4) if self.people else None


def numbers(
    store: Store,
    payment_events: Sequence[str],
    *,
    code_ids: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Numbers]:
    """Per code: scans, new contacts, new users, people and conversions for
    the scans between ``since`` and ``until`` (conversions: any payment
    after the person's first such scan). The person is the event's current
    owner, so merged people count once."""
    window = []
    if since is not None:
        window.append(_SCANS.c.at >= utc(since))
    if until is not None:
        window.append(_SCANS.c.at < utc(until))
    if code_ids is not None:
        if not code_ids:
            return {}
        window.append(_SCANS.c.code_id.in_(list(code_ids)))
    joined = _SCANS.join(_EVENTS, _EVENTS.c.id == _SCANS.c.event_id)
    out: dict[str, Numbers] = {}
    with store.read() as s:
        counts = s.execute(
            select(
                _SCANS.c.code_id,
                func.count(),
                func.count(func.distinct(case((_SCANS.c.contact.is_(True), _EVENTS.c.user_id)))),
                func.count(func.distinct(case((_SCANS.c.new_user.is_(True), _EVENTS.c.user_id)))),
                func.count(func.distinct(_EVENTS.c.user_id)),
            )
            .select_from(joined)
            .where(*window)
            .group_by(_SCANS.c.code_id)
        )
        for code_id, scans, contacts, new_users, people in counts:
            out[code_id] = Numbers(int(scans), int(contacts), int(new_users), int(people))
        if payment_events and out:
            first = (
                select(
                    _SCANS.c.code_id.label("code_id"),
                    _EVENTS.c.user_id.label("user_id"),
                    func.min(_SCANS.c.at).label("first_at"),
                )
                .select_from(joined)
                .where(*window)
                .group_by(_SCANS.c.code_id, _EVENTS.c.user_id)
                .subquery()
            )
            paid = aliased(Event)
            converted = s.execute(
                select(first.c.code_id, func.count())
                .where(
                    exists().where(
                        and_(
                            paid.user_id == first.c.user_id,
                            paid.name.in_(list(payment_events)),
                            paid.occurred_at >= first.c.first_at,
                        )
                    )
                )
                .group_by(first.c.code_id)
            )
            for code_id, n in converted:
                out[code_id].conversions = int(n)
            # contribution: the payments' amounts since the first scan, summed
            # here (an event's properties are JSON; reading them in Python
            # keeps SQLite and PostgreSQL alike), bounded
            payments = s.execute(
                select(first.c.code_id, paid.properties)
                .join(paid, paid.user_id == first.c.user_id)
                .where(paid.name.in_(list(payment_events)), paid.occurred_at >= first.c.first_at)
                .limit(MAX_REVENUE_ROWS)
            )
            for code_id, properties in payments:
                amount = (properties or {}).get("amount")
                if isinstance(amount, int | float) and not isinstance(amount, bool):
                    out[code_id].revenue = round(out[code_id].revenue + float(amount), 2)
    return out


MAX_REVENUE_ROWS = 500_000  # payments read for the contribution figures


@dataclass
class Day:
    day: date
    scans: int = 0
    contacts: int = 0


@dataclass
class Series:
    timezone: str
    days: list[Day] = field(default_factory=list)


def series(store: Store, code_id: str, *, days: int = 30, timezone: str = "Asia/Shanghai") -> Series:
    """Scans and new contacts (distinct people) per local day for the last
    ``days`` days (at most ``MAX_SERIES_DAYS``), oldest first, days without
    scans included."""
    days = max(1, min(days, MAX_SERIES_DAYS))
    zone = ZoneInfo(timezone)
    today = utcnow().astimezone(zone).date()
    first_day = today - timedelta(days=days - 1)
    start = datetime.combine(first_day, datetime.min.time(), zone)
    scans: Counter[date] = Counter()
    contacts: dict[date, set[str]] = {}
    with store.read() as s:
        rows = s.execute(
            select(_SCANS.c.at, _SCANS.c.contact, _SCANS.c.user_id).where(
                _SCANS.c.code_id == code_id, _SCANS.c.at >= utc(start)
            )
        )
        for at, contact, user_id in rows:
            local = utc(at).astimezone(zone).date()
            scans[local] += 1
            if contact:
                contacts.setdefault(local, set()).add(user_id)
    return Series(
        timezone,
        [Day(d, scans[d], len(contacts.get(d, ()))) for d in (first_day + timedelta(days=i) for i in range(days))],
    )
