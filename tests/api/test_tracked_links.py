"""Tracked links through the real service: a journey sends a message with a
tracked link (Temporal dev server, worker, outbox channels, SQLite), and a
real HTTP client on a real uvicorn server follows the link from the
message. A person's click is a 302 with the event ``message_clicked`` and
the link's tags (the journey waiting on the click hears it); every click
counts and an exact retry once; a preview, a crawler or a HEAD is
redirected and not counted; a forged or tampered token is a 404 with a
problem body and no event; the stats count the clicks per node and variant,
and the timeline shows them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from api.app import create_app
from api.settings import ApiSettings
from engine import tracked_links
from engine.channels.outbox import OutboxProvider
from engine.store import Store
from engine.store.models import Delivery, Event, LinkClick, Tag
from runtime.worker import build_activities, build_worker
from tests.api.conftest import WRITE, LiveServer, auth, eventually, make_settings, unique

SECRET = "tracked-links-test-secret-0123456789"
BROWSER = "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 Chrome/120.0 Mobile Safari/537.36 MicroMessenger/8.0.47"
TARGET = "https://shop.example.com/serum?from=wecom"

SOURCE = """\
journey "{jid}"
  entry api
  split:
    50% A: send webhook "{tpl_a}"
    50% B: send webhook "{tpl_b}"
  wait for event message_clicked up to 1d:
    on event: tag add clicked_through
    on timeout: exit
"""


@dataclass
class LinkStack:
    url: str
    http: httpx.AsyncClient
    store: Store
    settings: ApiSettings
    outbox: OutboxProvider


@pytest_asyncio.fixture(scope="module")
async def links(dev_env: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[LinkStack]:
    tmp = tmp_path_factory.mktemp("tracked-links")
    address = dev_env.client.service_client.config.target_host
    settings = make_settings(tmp, f"links-{uuid.uuid4().hex[:8]}", temporal_address=address, link_secret=SECRET)
    store = Store(settings.database_url)
    store.migrate()
    activities = build_activities(settings, store)
    outbox = activities.providers["webhook"]
    assert isinstance(outbox, OutboxProvider)
    app = create_app(settings, store=store)
    async with build_worker(dev_env.client, activities.all(), settings.task_queue):
        with LiveServer(app) as url:
            settings.link_base_url = url  # the API's public address: where the links point
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                yield LinkStack(url, http, store, settings, outbox)
    store.dispose()


def _clicks(stack: LinkStack, uid: str) -> list[Event]:
    with stack.store.read() as s:
        rows = s.scalars(
            select(Event).where(Event.user_id == uid, Event.name == "message_clicked").order_by(Event.received_at)
        )
        return list(rows)


def _link_clicks(stack: LinkStack) -> int:
    with stack.store.read() as s:
        return int(s.scalar(select(func.count()).select_from(LinkClick)) or 0)


async def _person(stack: LinkStack) -> str:
    member = unique("m")
    r = await stack.http.post("/v1/identify", json={"userId": member, "traits": {"nickname": "小林"}}, auth=(WRITE, ""))
    assert r.status_code == 200, r.text
    found = await stack.http.get("/v1/users/lookup", params={"kind": "member_id", "value": member}, headers=auth())
    assert found.status_code == 200, found.text
    return found.json()["user_id"]


@dataclass(frozen=True)
class Sent:
    variant: str
    node_id: str
    url: str  # the tracked link in the message


async def _journey(stack: LinkStack, n_users: int) -> tuple[str, dict[str, Sent]]:
    """A journey sent to ``n_users`` people: its id, and per person what they got."""
    jid, tpl_a, tpl_b = unique("clicks"), unique("tpl_a"), unique("tpl_b")
    bodies = {
        tpl_a: f'精华上新 {{{{ track("{TARGET}", tags=["skincare"], name="serum") }}}} 回T退订',
        tpl_b: "{% filter track_links(tags=['skincare', 'guide']) %}护肤攻略 " + TARGET + "，快看{% endfilter %}",
    }
    for name, body in bodies.items():
        r = await stack.http.put(f"/v1/templates/{name}", json={"body": body}, headers=auth())
        assert r.status_code in (200, 201), r.text
    source = SOURCE.format(jid=jid, tpl_a=tpl_a, tpl_b=tpl_b)
    r = await stack.http.post("/v1/journeys", json={"source": source, "id": jid}, headers=auth())
    assert r.status_code == 201, r.text
    users = [await _person(stack) for _ in range(n_users)]
    r = await stack.http.post(f"/v1/journeys/{jid}/runs", json={"user_ids": users}, headers=auth())
    assert r.status_code == 202, r.text

    async def all_sent() -> dict[str, str] | None:
        with stack.store.read() as s:
            rows = s.execute(
                select(Delivery.user_id, Delivery.variant, Delivery.idempotency_key, Delivery.node_id).where(
                    Delivery.journey_id == jid, Delivery.status == "sent"
                )
            ).all()
        return {u: (v, k, n) for u, v, k, n in rows} if len(rows) == n_users else None

    sent = await eventually(all_sent)
    assert sent, "the messages were not sent"
    bodies_by_key = {m.idempotency_key: m.body for m in stack.outbox.outbox.messages("webhook")}
    out: dict[str, Sent] = {}
    for uid, (variant, key, node_id) in sent.items():
        body = bodies_by_key[key]
        assert TARGET not in body, body  # the link was rewritten
        found = [word for word in body.replace("，", " ").split() if "/r/" in word]
        assert len(found) == 1 and found[0].startswith(stack.url + "/r/"), body
        out[uid] = Sent(variant, node_id, found[0])
    return jid, out


async def test_a_click_is_an_event_with_tags_and_a_redirect_and_previews_are_not_counted(links: LinkStack) -> None:
    jid, sent = await _journey(links, 1)
    ((uid, got),) = sent.items()
    url = got.url
    person = {"User-Agent": BROWSER}

    r = await links.http.get(url, headers=person)
    assert r.status_code == 302, r.text
    assert r.headers["location"] == TARGET and r.headers["cache-control"] == "no-store"
    (click,) = _clicks(links, uid)
    props = click.properties
    assert (props["journey"], props["step"], props["link"], props["variant"]) == (jid, got.node_id, TARGET, got.variant)
    assert props["template"].startswith("tpl_a" if got.variant == "A" else "tpl_b")
    assert set(props["tags"]) == ({"skincare"} if got.variant == "A" else {"skincare", "guide"})
    assert props.get("link_name") == ("serum" if got.variant == "A" else None)
    with links.store.read() as s:
        sources = dict(s.execute(select(Tag.tag, Tag.source).where(Tag.user_id == uid)).all())
    assert {t: sources[t] for t in props["tags"]} == dict.fromkeys(props["tags"], "link_click")

    # the journey waiting on the click heard it
    async def heard() -> bool:
        with links.store.read() as s:
            return s.scalar(select(Tag.tag).where(Tag.user_id == uid, Tag.tag == "clicked_through")) is not None

    assert await eventually(heard)

    # a second click is another event; an exact retry (same Idempotency-Key) is not
    assert (await links.http.get(url, headers=person)).status_code == 302
    retry = person | {"Idempotency-Key": "tap-42"}
    assert (await links.http.get(url, headers=retry)).status_code == 302
    assert (await links.http.get(url, headers=retry)).status_code == 302
    assert len(_clicks(links, uid)) == 3

    # previews and crawlers: redirected, not counted
    counted = _link_clicks(links)
    for headers, method in [
        ({"User-Agent": "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)"}, "GET"),
        ({"User-Agent": "Mozilla/5.0 (compatible; Bytespider; spider-feedback@bytedance.com)"}, "GET"),
        ({"User-Agent": "Mozilla/5.0 (compatible; LinkPreview/1.0)"}, "GET"),
        (person | {"Sec-Purpose": "prefetch"}, "GET"),
        ({}, "GET"),
        (person, "HEAD"),
    ]:
        request = links.http.build_request(method, url, headers=headers)
        if not headers:
            del request.headers["user-agent"]
        r = await links.http.send(request)
        assert r.status_code == 302 and r.headers["location"] == TARGET, (headers, method, r.status_code)
    assert len(_clicks(links, uid)) == 3 and _link_clicks(links) == counted

    # the timeline shows the clicks
    timeline = (await links.http.get(f"/v1/users/{uid}/timeline", headers=auth())).json()
    shown = [item for item in timeline if "message_clicked" in item["summary"]]
    assert len(shown) == 3, timeline


async def test_forged_tampered_and_unknown_tokens_are_404_with_no_event(links: LinkStack) -> None:
    _, sent = await _journey(links, 1)
    ((uid, got),) = sent.items()
    token = got.url.rsplit("/", 1)[1]
    link_id = tracked_links.verify(SECRET.encode(), token)
    assert link_id is not None
    other_secret = tracked_links.token(b"not-the-service-secret-at-all", bytes.fromhex(link_id))
    forged = tracked_links.token(SECRET.encode(), b"\x00" * 12)  # well signed, never sent: unknown
    person = {"User-Agent": BROWSER}
    before = _link_clicks(links)
    for bad in [
        token[:-1] + ("A" if token[-1] != "A" else "B"),  # the signature changed
        ("A" if token[0] != "A" else "B") + token[1:],  # the id changed
        token[:-1],
        "A" * 27,
        other_secret,
        forged,
    ]:
        r = await links.http.get(f"/r/{bad}", headers=person)
        assert r.status_code == 404, (bad, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert "unknown" in r.json()["detail"]
    assert (await links.http.get("/r/" + "A" * 65, headers=person)).status_code == 422
    r = await links.http.get(got.url, headers=person | {"Idempotency-Key": "x" * 256})
    assert r.status_code == 400 and "idempotency-key" in r.json()["detail"]
    assert _clicks(links, uid) == [] and _link_clicks(links) == before


async def test_the_stats_count_clicks_per_node_and_variant(links: LinkStack) -> None:
    jid, sent = await _journey(links, 8)
    by_variant: dict[str, list[str]] = {}
    for uid, got in sent.items():
        by_variant.setdefault(got.variant, []).append(uid)
    person = {"User-Agent": BROWSER}
    expected: dict[str, tuple[int, int]] = {}
    for variant, people in by_variant.items():
        clickers = people[: max(1, len(people) // 2)]
        for n, uid in enumerate(clickers):
            for _ in range(n + 1):  # the first clicks once, the second twice…
                assert (await links.http.get(sent[uid].url, headers=person)).status_code == 302
        expected[variant] = (sum(range(1, len(clickers) + 1)), len(clickers))
    r = await links.http.get(f"/v1/journeys/{jid}/stats", headers=auth())
    assert r.status_code == 200, r.text
    stats = r.json()
    got = {v["variant"]: (v["clicks"], v["clicked"], v["click_rate"], v["entered"]) for v in stats["variants"]}
    for variant, (clicks, clicked) in expected.items():
        entered = len(by_variant[variant])
        assert got[variant] == (clicks, clicked, round(clicked / entered, 6), entered), (variant, got)
    nodes = {n["node_id"]: n for n in stats["nodes"]}
    for variant, (clicks, clicked) in expected.items():
        node = nodes[sent[by_variant[variant][0]].node_id]
        assert (node["sent"], node["clicks"], node["clicked"]) == (len(by_variant[variant]), clicks, clicked)
        assert node["click_rate"] == round(clicked / node["sent"], 6)
