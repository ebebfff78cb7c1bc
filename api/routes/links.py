"""``GET /r/{token}``: a tracked link in a message (``engine.tracked_links``).

No API key: whoever got the message clicks it. The token is checked before
anything is read (its length, then its HMAC signature under
``link_secret``), so a forged or guessed URL is a 404 that costs no lookup.
A person's click is counted (the link's content tags added to them with
source ``link_click``, a ``LinkClick`` for the stats), recorded as the event
``message_clicked`` through the same store-first, de-duplicated ingest as
``/v1/track`` (``Dispatcher.ingest``), and redirected (302) to the link. A
preview or crawler fetch (``HEAD``, a bot User-Agent, a prefetch) is
redirected and not counted. The redirect waits on Temporal for at most a
second: the event is stored first, and what is not delivered by then goes on
in the background (or is swept).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse

from api.deps import IngestorDep, OptionalClientDep, SettingsDep, StoreDep
from api.problems import Problem
from engine import tracked_links
from engine.events import ingest_event
from engine.store.types import utcnow

router = APIRouter(tags=["tracked links"])

ANSWER_WITHIN_SECONDS = 1.0  # the most a click's redirect waits on Temporal
_RETRY_HEADERS = ("idempotency-key", "x-request-id")
_NOT_FOUND = "this link is unknown or was not made by this service"
LINK_RESPONSES: dict[int | str, dict[str, str]] = {
    302: {"description": "To the link's URL (counted as a click unless it was a preview or a crawler)"},
    400: {"description": "An Idempotency-Key or X-Request-Id over 255 characters"},
    404: {
        "description": "The token is malformed, not signed by this service, or unknown (or links are not configured)"
    },
}


def _redirect(url: str) -> RedirectResponse:
    """302 and never cached: a second click must reach us again to count."""
    return RedirectResponse(
        url, status_code=302, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


def _retry_key(request: Request) -> str | None:
    for header in _RETRY_HEADERS:
        value = request.headers.get(header)
        if value is not None:
            if len(value) > tracked_links.MAX_RETRY_KEY_CHARS:
                raise Problem(400, f"{header} is over {tracked_links.MAX_RETRY_KEY_CHARS} characters")
            return value.strip() or None
    return None


async def follow(
    token: Annotated[str, Path(max_length=64, description="The link's signed token, as in the message")],
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    ingestor: IngestorDep,
    client: OptionalClientDep,
) -> RedirectResponse:
    if settings.link_secret is None:  # no link can have been made here
        raise Problem(
            404, "tracked links are not configured here (JOURNEYS_LINK_SECRET is not set)", kind="link-not-found"
        )
    link_id = tracked_links.verify(settings.link_secret.get_secret_value().encode("utf-8"), token)
    if link_id is None:
        raise Problem(404, _NOT_FOUND, kind="link-not-found")
    retry_key = _retry_key(request)
    link = await asyncio.to_thread(tracked_links.find, store, link_id)
    if link is None:
        raise Problem(404, _NOT_FOUND, kind="link-not-found")
    if tracked_links.is_preview(request.method, request.headers, settings.link_bot_agents):
        return _redirect(link.url)
    event_id = tracked_links.click_event_id(link.id, retry_key, uuid.uuid4().hex)
    at = utcnow()
    click = await asyncio.to_thread(tracked_links.record_click, store, link, event_id=event_id, at=at)
    wait_until = asyncio.get_running_loop().time() + min(ANSWER_WITHIN_SECONDS, settings.ingest_answer_seconds)
    dispatcher = ingestor.dispatcher
    if click.signals:  # the tags reach the user's runs before the click does
        await dispatcher.signal_user(client, click.user_id, wait_until=wait_until)
    if click.identifier is not None:
        await dispatcher.ingest(
            client,
            event_id=event_id,
            name=tracked_links.CLICK_EVENT,
            identifiers=[click.identifier],
            properties=link.properties(),
            occurred_at=at,
            kind="link_click",
            wait_until=wait_until,
        )
    else:  # a person known by id only: stored undispatched, the dispatcher's sweep delivers it
        await asyncio.to_thread(
            ingest_event,
            store,
            event_id=event_id,
            name=tracked_links.CLICK_EVENT,
            user_id=click.user_id,
            properties=link.properties(),
            occurred_at=at,
            rules=settings.derived,
            dispatch=True,
        )
    return _redirect(link.url)


router.add_api_route(
    "/r/{token}",
    follow,
    methods=["GET"],
    status_code=302,
    response_class=RedirectResponse,
    responses=LINK_RESPONSES,
    summary="A tracked link: count the click, then redirect",
    operation_id="follow_tracked_link",
)
# link checkers and preview cards ask with HEAD: redirected, never counted
router.add_api_route(
    "/r/{token}", follow, methods=["HEAD"], status_code=302, response_class=RedirectResponse, include_in_schema=False
)
