"""Tracked links at the engine level, on a real store (SQLite, and
PostgreSQL with ``scripts/with-postgres``): what a send's render makes of
``track()`` and ``track_links``, the token's signature, which fetches are
previews, a click counted once per event id with the link's tags, and the
click numbers per node and variant."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from contracts.activities import SendRequest
from engine import stats, tracked_links
from engine.settings import Settings
from engine.store import Store
from engine.store.models import TagHistory
from engine.templates import TemplateInfo, TemplateRenderError, render, validate
from engine.tracked_links import LinkTracker, MessageOrigin

SECRET = b"a-test-secret-of-32-characters!!"
BASE = "https://j.example.com"
ORIGIN = MessageOrigin("d", "r", "j", 1, "n", None, "t", "u")
BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) AppleWebKit/605.1.15 Mobile MicroMessenger/8.0.47"


def _template(body: str) -> TemplateInfo:
    return TemplateInfo("skin", body, {}, None, False, 3)


def _tracker(delivery: str = "d-1", *, variant: str | None = "A", user: str = "u-1", run: str = "r-1") -> LinkTracker:
    return LinkTracker(SECRET, BASE, 20, MessageOrigin(delivery, run, "j-skin", 2, "send-1", variant, "skin", user))


def _token(url: str) -> str:
    assert url.startswith(BASE + "/r/"), url
    return url.removeprefix(BASE + "/r/")


def test_a_send_renders_signed_short_links_and_a_preview_the_links_as_written() -> None:
    body = (
        '精华上新 {{ track("https://shop.example.com/serum?from=sms", tags=["skincare", "新品 上架"], name="serum") }}'
        " 回T退订\n{% filter track_links(tags=['guide']) %}攻略 https://a.example.com/g，"
        "会员 (https://b.example.com/vip).{% endfilter %}"
    )
    tracker = _tracker()
    sent = render(_template(body), "sms", {}, tracker).body
    links = tracker.links
    assert [link.url for link in links] == [
        "https://shop.example.com/serum?from=sms",
        "https://a.example.com/g",
        "https://b.example.com/vip",
    ]
    assert links[0].tags == ["skincare", "新品_上架"] and links[0].name == "serum" and links[1].tags == ["guide"]
    tokens = [
        _token(word) for word in sent.replace("，", " ").replace("(", " ").replace(").", " ").split() if "/r/" in word
    ]
    assert len(tokens) == 3 and all(len(t) == tracked_links.TOKEN_CHARS for t in tokens)
    assert [tracked_links.verify(SECRET, t) for t in tokens] == [link.id for link in links]
    assert "会员 (" in sent and ")." in sent and "，" in sent  # the text around the links is kept
    # the same delivery renders the same links (a retried send); another delivery others
    again = _tracker()
    assert render(_template(body), "sms", {}, again).body == sent
    other = _tracker("d-2")
    assert render(_template(body), "sms", {}, other).body != sent
    # a preview (no tracker) shows the links as written
    preview = render(_template(body), "sms", {}).body
    assert "https://shop.example.com/serum?from=sms" in preview and "/r/" not in preview


def test_a_token_is_refused_when_tampered_truncated_or_signed_with_another_secret() -> None:
    tracker = _tracker()
    good = _token(render(_template('{{ track("https://shop.example.com/") }}'), None, {}, tracker).body)
    assert tracked_links.verify(SECRET, good) == tracker.links[0].id
    flipped_sig = good[:-1] + ("A" if good[-1] != "A" else "B")
    flipped_id = ("A" if good[0] != "A" else "B") + good[1:]
    # the last character carries 4 bits of the signature and 2 unused ones:
    # another spelling of the same bytes is refused too
    last = tracked_links._b64(bytes(range(8)))[-1]
    assert last in "AEIMQUYcgkosw048"
    respelled = [good[:-1] + c for c in "ABCDEFGHIJKLMNOP" if c != good[-1]]
    for bad in (flipped_sig, flipped_id, good[:-1], good + "A", "", "!" * 27, "A" * 27, *respelled):
        assert tracked_links.verify(SECRET, bad) is None, bad
    assert tracked_links.verify(b"another-secret-entirely-32-chars", good) is None


def test_bad_links_are_refused_when_saved_and_a_send_without_settings_fails_with_why() -> None:
    assert "http(s) URL" in (validate('{{ track("javascript:alert(1)") }}') or "")
    assert "http(s) URL" in (validate('{{ track("ftp://files.example.com/a") }}') or "")
    assert "tags" in (validate('{{ track("https://a.example.com", tags=' + str(list(range(11))) + ") }}") or "")
    assert validate("{{ track(event.url, tags=[event.category]) }}") is None  # depends on the data
    assert validate("{% filter track_links %}https://a.example.com{% endfilter %}") is None
    unconfigured = LinkTracker(None, None, 20, ORIGIN)
    with pytest.raises(TemplateRenderError, match="JOURNEYS_LINK_SECRET and JOURNEYS_LINK_BASE_URL"):
        render(_template('{{ track("https://a.example.com") }}'), None, {}, unconfigured)
    few = LinkTracker(SECRET, BASE, 2, ORIGIN)
    with pytest.raises(TemplateRenderError, match="more than 2 tracked links"):
        render(_template('{% for i in range(3) %}{{ track("https://a.example.com/" ~ i) }}{% endfor %}'), None, {}, few)
    with pytest.raises(TemplateRenderError, match="missing variable"):
        render(_template("{{ track(event.url) }}"), None, {}, _tracker())
    # a template without tracked links is untouched even without the settings
    assert render(_template("hi https://a.example.com"), None, {}, unconfigured).body == "hi https://a.example.com"


def test_previews_and_crawlers_are_told_apart_from_people() -> None:
    agents = Settings().link_bot_agents
    person = {"user-agent": BROWSER}
    assert not tracked_links.is_preview("GET", person, agents)
    assert not tracked_links.is_preview("GET", {"user-agent": "Mozilla/5.0 HeadlessChrome/120.0"}, agents)
    assert tracked_links.is_preview("HEAD", person, agents)
    assert tracked_links.is_preview("GET", {}, agents)
    assert tracked_links.is_preview("GET", {"user-agent": "facebookexternalhit/1.1"}, agents)
    assert tracked_links.is_preview("GET", {"user-agent": "Mozilla/5.0 (compatible; Baiduspider/2.0)"}, agents)
    assert tracked_links.is_preview("GET", {"user-agent": "TelegramBot (like TwitterBot)"}, agents)
    assert tracked_links.is_preview("GET", person | {"sec-purpose": "prefetch;prerender"}, agents)
    assert tracked_links.is_preview("GET", person | {"x-purpose": "preview"}, agents)


def _sent_link(store: Store, tracker: LinkTracker, url: str, tags: list[str]) -> tracked_links.LinkInfo:
    body = render(_template(f'{{{{ track("{url}", tags={tags!r}) }}}}'), None, {}, tracker).body
    tracked_links.save(store, tracker)
    tracked_links.save(store, tracker)  # a retried send: the row is there already
    found = tracked_links.find(store, tracked_links.verify(SECRET, _token(body)) or "")
    assert found is not None
    return found


def test_a_click_counts_once_per_event_id_and_adds_the_links_tags(store: Store) -> None:
    link = _sent_link(store, _tracker(user="u-click"), "https://shop.example.com/serum", ["skincare"])
    assert (link.url, link.tags, link.origin.journey_id, link.origin.node_id, link.origin.variant) == (
        "https://shop.example.com/serum",
        ["skincare"],
        "j-skin",
        "send-1",
        "A",
    )
    first = tracked_links.record_click(store, link, event_id="click-1")
    assert first.new and first.tags_added == ["skincare"] and first.user_id == "u-click"
    retry = tracked_links.record_click(store, link, event_id="click-1")
    assert not retry.new and retry.tags_added == []
    again = tracked_links.record_click(store, link, event_id="click-2")
    assert again.new and again.tags_added == []  # carried already
    with store.read() as s:
        history = s.execute(select(TagHistory.tag, TagHistory.source).where(TagHistory.user_id == "u-click")).all()
    assert [tuple(h) for h in history] == [("skincare", "link_click")]
    assert stats.node_clicks(store, "j-skin") == {"send-1": stats.ClickCounts(clicks=2, clicked=1)}
    assert tracked_links.click_event_id("L", "retry-7", "x") == tracked_links.click_event_id("L", "retry-7", "y")
    assert tracked_links.click_event_id("L", None, "x") != tracked_links.click_event_id("L", None, "y")


def test_clicks_are_counted_per_node_and_variant_and_version(store: Store) -> None:
    a1 = _sent_link(store, _tracker("d-a1", variant="A", user="ua1", run="ra1"), "https://s.example.com/1", [])
    a2 = _sent_link(store, _tracker("d-a2", variant="A", user="ua2", run="ra2"), "https://s.example.com/1", [])
    b1 = _sent_link(store, _tracker("d-b1", variant="B", user="ub1", run="rb1"), "https://s.example.com/1", [])
    for n, link in enumerate([a1, a1, a2, b1]):
        tracked_links.record_click(store, link, event_id=f"c-{n}")
    assert stats.variant_clicks(store, "j-skin") == {
        "A": stats.ClickCounts(clicks=3, clicked=2),
        "B": stats.ClickCounts(clicks=1, clicked=1),
    }
    assert stats.variant_clicks(store, "j-skin", version=2) == stats.variant_clicks(store, "j-skin")
    assert stats.variant_clicks(store, "j-skin", version=1) == {}
    assert stats.node_clicks(store, "j-skin") == {"send-1": stats.ClickCounts(clicks=4, clicked=3)}


def test_for_send_reads_the_settings_and_the_request() -> None:
    settings = Settings(link_secret="s" * 16, link_base_url=BASE, link_max_per_message=5)
    req = SendRequest(
        idempotency_key="k-1",
        run_key="r-1",
        journey_id="j",
        version=4,
        node_id="send-2",
        template="t",
        channels=["sms"],
        user_id="u",
        now="2026-01-01T00:00:00Z",
        variant="B",
    )
    tracker = tracked_links.for_send(settings, req, "u-canonical")
    assert (tracker.secret, tracker.base_url, tracker.max_links) == (b"s" * 16, BASE, 5)
    assert tracker.origin == MessageOrigin("k-1", "r-1", "j", 4, "send-2", "B", "t", "u-canonical")
