"""Tracked links: a link in a message that says who clicked it.

Scenario 5 (``000``): clicks on pushed content become content tags, and later
pushes pick content by them. An operator opts in where the link is written:

- one link: ``{{ track("https://shop.example.com/serum", tags=["skincare"]) }}``
  (``name="serum"`` labels it in the event);
- every ``http(s)://`` link of a part of the template (or all of it)::

      {% filter track_links(tags=["skincare"]) %}
      新品精华 https://shop.example.com/serum ，会员价 https://shop.example.com/vip
      {% endfilter %}

A send renders each such link as ``<link_base_url>/r/<token>`` and keeps a
row (``TrackedLink``) with what a click must record: the delivery, journey,
version, node, variant, template, user, URL and content tags. The token is
the row's id (12 bytes) and its HMAC-SHA256 signature under
``Settings.link_secret`` (8 bytes), base64url: 27 characters, so an SMS stays
short, and a URL can be neither forged nor enumerated (the id itself is an
HMAC of the delivery, the link's place and its URL). The id is the same
whenever the same delivery renders again, so a retried send finds its rows.
A preview (no send) renders the links unchanged.

A click (``GET /r/<token>``, no API key: ``api.routes.links``) checks the
signature before reading anything, then counts the click (``record_click``:
a ``LinkClick`` row, the link's tags added to the user with source
``link_click``, in one transaction), ingests ``message_clicked`` through the
API's store-first, de-duplicated ingest, and redirects (302). Each click is
an event; only an exact retry (the same ``Idempotency-Key`` or
``X-Request-Id`` header) is the same one. A preview or crawler fetch
(``is_preview``: ``HEAD``, a bot User-Agent, a prefetch ``Purpose``) is
redirected and not counted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Undefined, pass_context
from jinja2.runtime import Context
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.activities import SendRequest
from engine import identity, run_signals
from engine.settings import Settings
from engine.store import Store
from engine.store.models import LinkClick, TrackedLink
from engine.store.types import utc, utcnow
from engine.tags import add_tags
from engine.template_limits import LimitedEnvironment, TemplateLimitError

CLICK_EVENT = "message_clicked"
TAG_SOURCE = "link_click"
# The key the send's tracker is passed under in the render context: not a
# name a template can write, so a template cannot reach the tracker itself.
LINKS_KEY = "journeys.tracked-links"

MAX_URL_CHARS = 2048
MAX_TAGS = 10
MAX_TAG_CHARS = 64
MAX_NAME_CHARS = 64
MAX_RETRY_KEY_CHARS = 255
_ID_BYTES = 12
_SIG_BYTES = 8
TOKEN_CHARS = 27  # base64url of 12 + 8 bytes, unpadded
_TOKEN = re.compile(r"[A-Za-z0-9_-]{27}")
_TAG = re.compile(r"[\w.:\-]+")
_TAG_OTHER = re.compile(r"[^\w.:\-]+")
# An http(s) URL in running text: ASCII URL characters only, so the Chinese
# punctuation an SMS puts right after a link (，。) is not part of it.
_URL_IN_TEXT = re.compile(r"https?://[A-Za-z0-9\-._~:/?#\[\]@!$&()*+,;=%]+")
_TRAILING = ".,;:!?)]"
_PREVIEW_PURPOSES = ("prefetch", "preview", "prerender")


class LinkError(TemplateLimitError):
    """A tracked link that cannot work whatever the data (not an http(s)
    URL, too long, too many tags): like a limit, refused when the template
    is saved if its text already shows it, a failed delivery otherwise."""


@dataclass(frozen=True)
class MessageOrigin:
    """The message a link is in: carried from the send request to the link
    row and from the link row to each click row, under the same column names."""

    delivery_key: str
    run_key: str | None
    journey_id: str
    version: int
    node_id: str
    variant: str | None
    template: str
    user_id: str

    def columns(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class LinkInfo:
    """One rendered link, as stored and as a click reads it."""

    id: str
    origin: MessageOrigin
    position: int
    url: str
    name: str | None
    tags: list[str]

    def columns(self) -> dict[str, Any]:
        """The ``tracked_links`` row's columns."""
        return {
            "id": self.id,
            **self.origin.columns(),
            "position": self.position,
            "url": self.url,
            "name": self.name,
            "tags": list(self.tags),
        }

    def properties(self) -> dict[str, Any]:
        """The ``message_clicked`` event's properties."""
        o = self.origin
        props: dict[str, Any] = {
            "journey": o.journey_id,
            "version": o.version,
            "step": o.node_id,
            "template": o.template,
            "link": self.url,
            "variant": o.variant,
            "tags": list(self.tags),
            "delivery": o.delivery_key,
        }
        if self.name:
            props["link_name"] = self.name
        return props


_ORIGIN_FIELDS = frozenset(f.name for f in fields(MessageOrigin))
# what a click row keeps of its message (the clicker is the canonical user now)
_CLICK_ORIGIN = ("delivery_key", "run_key", "journey_id", "version", "node_id", "variant")


@dataclass
class LinkTracker:
    """What one send's render needs to rewrite links, and the links it
    rewrote (saved by ``save`` before the message goes out)."""

    secret: bytes | None
    base_url: str | None
    max_links: int
    origin: MessageOrigin
    links: list[LinkInfo] = field(default_factory=list)

    def link(self, url: str, tags: list[str], name: str | None) -> str:
        if self.secret is None or not self.base_url:
            raise LinkError(
                "tracked links need JOURNEYS_LINK_SECRET and JOURNEYS_LINK_BASE_URL (the API's public address)"
            )
        if len(self.links) >= self.max_links:
            raise LinkError(f"more than {self.max_links} tracked links in one message")
        position = len(self.links)
        material = "\0".join(["link", self.origin.delivery_key, str(position), url]).encode("utf-8")
        raw = hmac.new(self.secret, material, hashlib.sha256).digest()[:_ID_BYTES]
        self.links.append(LinkInfo(id=raw.hex(), origin=self.origin, position=position, url=url, name=name, tags=tags))
        return f"{self.base_url.rstrip('/')}/r/{token(self.secret, raw)}"


def for_send(settings: Settings, req: SendRequest, user_id: str) -> LinkTracker:
    """The tracker of one send (cheap: nothing is read or written unless the
    template tracks a link)."""
    secret = settings.link_secret.get_secret_value().encode("utf-8") if settings.link_secret else None
    return LinkTracker(
        secret=secret,
        base_url=settings.link_base_url,
        max_links=settings.link_max_per_message,
        origin=MessageOrigin(
            delivery_key=req.idempotency_key,
            run_key=req.run_key,
            journey_id=req.journey_id,
            version=req.version,
            node_id=req.node_id,
            variant=req.variant,
            template=req.template,
            user_id=user_id,
        ),
    )


# ---------------------------------------------------------------- tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _signature(secret: bytes, raw_id: bytes) -> bytes:
    return hmac.new(secret, b"sig\0" + raw_id, hashlib.sha256).digest()[:_SIG_BYTES]


def token(secret: bytes, raw_id: bytes) -> str:
    """A link's URL token: its id and the id's signature."""
    return _b64(raw_id) + _b64(_signature(secret, raw_id))


def verify(secret: bytes, text: str) -> str | None:
    """The link id a token carries, or None when it is malformed or its
    signature is not ours (checked in constant time, before any lookup)."""
    if len(text) != TOKEN_CHARS or _TOKEN.fullmatch(text) is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(text[:16])
        sig = base64.urlsafe_b64decode(text[16:] + "=")
    except (binascii.Error, ValueError):
        return None
    if len(raw) != _ID_BYTES or _b64(sig) != text[16:]:  # one spelling per token: unused bits must be 0
        return None
    if not hmac.compare_digest(sig, _signature(secret, raw)):
        return None
    return raw.hex()


# ---------------------------------------------------------------- rendering


def _check_url(url: Any) -> str:
    if not isinstance(url, str):
        raise LinkError(f"track() takes a URL as text, not {type(url).__name__}")
    url = url.strip()
    if len(url) > MAX_URL_CHARS:
        raise LinkError(f"a tracked link is over {MAX_URL_CHARS} characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() or ord(c) < 32 for c in url):
        raise LinkError(f"a tracked link must be an http(s) URL, not {url[:80]!r}")
    return url


def _check_tags(tags: Any) -> list[str]:
    """Content tags as ``tag add`` would take them: a computed value is made
    safe (other characters become ``_``); an undefined value in the save-time
    probe is skipped (with real data it is a missing-variable error)."""
    if tags is None or isinstance(tags, Undefined) and not str(tags):
        return []
    items = [tags] if isinstance(tags, str) else tags
    if not isinstance(items, list | tuple):
        raise LinkError("track()'s tags= takes a list of tag names")
    if len(items) > MAX_TAGS:
        raise LinkError(f"a tracked link adds at most {MAX_TAGS} tags")
    out: list[str] = []
    for item in items:
        if isinstance(item, Undefined):
            str(item)  # StrictUndefined raises here; the probe's gives ""
            continue
        if not isinstance(item, str | int):
            raise LinkError(f"a tag name is text, not {type(item).__name__}")
        text = str(item).strip()
        tag = text if _TAG.fullmatch(text) else _TAG_OTHER.sub("_", text).strip("_")
        if not tag or len(tag) > MAX_TAG_CHARS:
            raise LinkError(f"{text[:80]!r} is not a tag name (letters, digits, _ - . :, at most {MAX_TAG_CHARS})")
        out.append(tag)
    return list(dict.fromkeys(out))


def _check_name(name: Any) -> str | None:
    if name is None or isinstance(name, Undefined) and not str(name):
        return None
    if not isinstance(name, str) or len(name) > MAX_NAME_CHARS:
        raise LinkError(f"track()'s name= is text of at most {MAX_NAME_CHARS} characters")
    return name or None


def _tracked(context: Context, url: Any, tags: Any, name: Any) -> str:
    if isinstance(url, Undefined):
        return str(url)  # a missing value: an error with real data, "" in the probe
    checked, tag_list, label = _check_url(url), _check_tags(tags), _check_name(name)
    tracker = context.get(LINKS_KEY)
    if not isinstance(tracker, LinkTracker):
        return checked  # a preview or the save-time probe: the link as written
    return tracker.link(checked, tag_list, label)


@pass_context
def track(context: Context, url: Any, tags: Any = None, name: Any = None) -> str:
    """``{{ track(url, tags=[...], name=...) }}``: one tracked link."""
    return _tracked(context, url, tags, name)


@pass_context
def track_links(context: Context, text: Any, tags: Any = None, name: Any = None) -> str:
    """``{% filter track_links(tags=[...]) %}…{% endfilter %}``: every
    http(s) URL in the block tracked (our own tracked links left alone)."""
    tracker = context.get(LINKS_KEY)
    own = f"{tracker.base_url.rstrip('/')}/r/" if isinstance(tracker, LinkTracker) and tracker.base_url else None
    body = str(text)

    def one(match: re.Match[str]) -> str:
        found = match.group(0)
        kept = found.rstrip(_TRAILING)
        tail = found[len(kept) :]
        if own is not None and kept.startswith(own):
            return found
        return _tracked(context, kept, tags, name) + tail

    return _URL_IN_TEXT.sub(one, body)


def install(env: LimitedEnvironment) -> None:
    """Make ``track`` and ``track_links`` available to templates of ``env``."""
    env.globals["track"] = track
    env.filters["track_links"] = track_links


# ---------------------------------------------------------------- storage


def save(store: Store, tracker: LinkTracker | None) -> None:
    """Keep the links a render rewrote (before the message is sent); a row
    already there (a retried send) is left as it is."""
    if tracker is None or not tracker.links:
        return
    links = list(tracker.links)

    def work(s: Session) -> None:
        have = set(s.scalars(select(TrackedLink.id).where(TrackedLink.id.in_([link.id for link in links]))))
        for link in links:
            if link.id in have:
                continue
            s.add(TrackedLink(**link.columns()))
            have.add(link.id)

    store.transact(work)


def find(store: Store, link_id: str) -> LinkInfo | None:
    with store.read() as s:
        row = s.get(TrackedLink, link_id)
        if row is None:
            return None
        origin = MessageOrigin(**{name: getattr(row, name) for name in _ORIGIN_FIELDS})
        return LinkInfo(
            id=row.id,
            origin=origin,
            position=row.position,
            url=row.url,
            name=row.name,
            tags=[str(t) for t in row.tags or []],
        )


def links_of(store: Store, delivery_key: str) -> list[LinkInfo]:
    """A message's tracked links, in their order."""
    with store.read() as s:
        ids = list(
            s.scalars(
                select(TrackedLink.id).where(TrackedLink.delivery_key == delivery_key).order_by(TrackedLink.position)
            )
        )
    return [info for info in (find(store, i) for i in ids) if info is not None]


# ---------------------------------------------------------------- clicks


def is_preview(method: str, headers: Mapping[str, str], bot_agents: Iterable[str]) -> bool:
    """A fetch that is not a person clicking: ``HEAD`` (link checkers,
    preview cards), no User-Agent, a known preview or crawler User-Agent, or
    a browser's prefetch (``Purpose``/``Sec-Purpose``/``X-Purpose``/``X-Moz``)."""
    if method.upper() == "HEAD":
        return True
    agent = (headers.get("user-agent") or "").strip().lower()
    if not agent or any(token.lower() in agent for token in bot_agents if token):
        return True
    for header in ("purpose", "sec-purpose", "x-purpose", "x-moz"):
        value = (headers.get(header) or "").lower()
        if any(p in value for p in _PREVIEW_PURPOSES):
            return True
    return False


def click_event_id(link_id: str, retry_key: str | None, fresh: str) -> str:
    """The click's event id: one per click (``fresh``, e.g. a UUID), or, for
    a request that names itself (``Idempotency-Key``/``X-Request-Id``), one
    per that name, so an exact retry is the same event."""
    if retry_key:
        return f"click-{link_id}-{hashlib.sha256(retry_key.encode('utf-8')).hexdigest()[:32]}"
    return f"click-{link_id}-{fresh}"


@dataclass(frozen=True)
class Click:
    user_id: str  # the canonical user now
    identifier: tuple[str, str] | None  # one of theirs, for the ingest to land on them; None: they have none
    new: bool  # False: this event id was counted already (an exact retry)
    tags_added: list[str]
    signals: bool  # run signals queued (the tags): send them before the event


def record_click(store: Store, link: LinkInfo, *, event_id: str, at: datetime | None = None) -> Click:
    """Count one click and add the link's tags (source ``link_click``), in
    one transaction, before the event is ingested: a journey that wakes on
    ``message_clicked`` already sees the tags."""
    stamp = utc(at) if at else utcnow()

    def work(s: Session) -> Click:
        uid = identity.ensure_user(
            s, identity.canonical_user_id(s, link.origin.user_id) or link.origin.user_id, now=stamp
        )
        new = s.get(LinkClick, event_id) is None
        added: list[str] = []
        if new:
            s.add(
                LinkClick(
                    event_id=event_id,
                    link_id=link.id,
                    **{name: getattr(link.origin, name) for name in _CLICK_ORIGIN},
                    user_id=uid,
                    at=stamp,
                )
            )
            added = add_tags(s, uid, link.tags, source=TAG_SOURCE, now=stamp)
        ids = identity.identities_of(s, uid)
        pair = next(((kind, values[0]) for kind, values in ids.items() if values), None)
        return Click(uid, pair, new, added, bool(s.info.get(run_signals.QUEUED)))

    return store.transact(work)
