"""The console in headless Chromium against the real service.

One operator's session, start to finish: sign in, write a journey in the
editor, see the error the checker finds at the right line, fix it, deploy,
send events through the Segment-style API, and watch the numbers on the
diagram change without a reload; then the node panel, the list's actions,
version diffs, the user page and a template preview. Screenshots of every
page go to ``artifacts/screenshots/``.

Waits are bounded polls (Playwright's ``wait_for_*`` with a timeout), never
assertions about how long something took.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.console.conftest import ADMIN, VIEWER, WRITE, LiveStack, shot, unique

JOURNEY = """\
journey "新会员欢迎 {tag}"
  description "注册后发欢迎语，等首单；一天没下单就结束"
  entry event {event}
  reentry once
  goal event order_paid within 3d

  send wecom "{template}"
  wait for event order_paid up to 1d:
    on event:
      tag add ordered
    on timeout:
      exit
"""
ERROR_LINE = 7  # the send line, misspelt below


def _api(live: LiveStack) -> httpx.Client:
    return httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30)


def _login(page: Any, live: LiveStack, path: str, key: str = ADMIN) -> None:
    page.goto(live.url + path)
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.get_by_label("API key").fill(key)
    page.get_by_label("API key").press("Enter")  # Enter submits: keyboard-usable
    page.wait_for_url(re.compile(re.escape(path.split("?")[0]) + r"(\?.*)?$"))


def _count(page: Any, node_id: str, key: str) -> Any:
    return page.locator(f'#diagram .count[data-node-id="{node_id}"][data-key="{key}"]')


def test_edit_deploy_and_watch_counts_live(live: LiveStack, page: Any) -> None:
    tag = unique("t")
    journey_id = unique("welcome")
    event = unique("signed_up").replace("-", "_")
    template = unique("welcome_tpl").replace("-", "_")
    member, other = unique("m"), unique("m")
    source = JOURNEY.format(tag=tag, event=event, template=template)
    with _api(live) as api:
        r = api.put(f"/v1/templates/{template}", json={"body": "欢迎加入，{{ user.nickname }}！新人券已到账。"})
        assert r.status_code in (200, 201), r.text

    # ---- sign in (the login page first, as the operator sees it)
    page.goto(live.url + "/console/editor")
    expect(page.get_by_role("heading", name="Sign in to the console")).to_be_visible()
    shot(page, "01-login")
    page.get_by_label("API key").fill("not-a-key")
    page.get_by_label("API key").press("Enter")
    expect(page.locator("#login-error")).to_contain_text("not an API key")
    page.get_by_label("API key").fill(ADMIN)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console/editor$"))

    # ---- the editor: valid starter text checks clean
    editor = page.locator("#source")
    expect(page.locator("#check-state")).to_have_text(re.compile("No errors"))
    expect(page.locator("#deploy")).to_be_enabled()

    # ---- type a journey with a mistake, with real keystrokes
    broken = source.replace("  send wecom", "  sedn wecom")
    lines = broken.split("\n")
    editor.fill("\n".join(lines[: ERROR_LINE - 1]))  # the head at once…
    editor.press("Control+End")
    page.keyboard.type("\n" + "\n".join(lines[ERROR_LINE - 1 :]))  # …the rest typed, key by key
    assert editor.input_value() == broken
    # syntax colours: the same text drawn behind the (transparent) textarea,
    # on the same spot with the same metrics, so every character lines up
    assert page.evaluate("() => document.querySelector('#highlight code').textContent") == broken + "\n"
    expect(page.locator("#highlight .hl-kw", has_text="journey")).to_have_count(1)
    expect(page.locator("#highlight .hl-str").first).to_have_text(f'"新会员欢迎 {tag}"')
    expect(page.locator("#highlight .hl-num", has_text="3d")).to_have_count(1)
    aligned = page.evaluate(
        """() => {
        const a = document.getElementById('source'), b = document.getElementById('highlight');
        const s = getComputedStyle(a), t = getComputedStyle(b);
        const ra = a.getBoundingClientRect(), rb = b.getBoundingClientRect();
        const keys = ['fontFamily', 'fontSize', 'lineHeight', 'paddingTop', 'paddingLeft', 'tabSize', 'whiteSpace'];
        return keys.every((k) => s[k] === t[k]) && ra.top === rb.top && ra.left === rb.left
          && s.color === 'rgba(0, 0, 0, 0)';
      }"""
    )
    assert aligned
    problem = page.locator(f'#problems button[data-line="{ERROR_LINE}"]')
    expect(problem).to_be_visible()
    expect(problem).to_contain_text(f"{ERROR_LINE}:3")
    expect(problem).to_contain_text("sedn")
    expect(problem.locator(".hint")).to_contain_text("send")
    expect(page.locator(f'#gutter div[data-line="{ERROR_LINE}"]')).to_have_class(re.compile("has-error"))
    expect(page.locator("#gutter .has-error")).to_have_count(1)
    expect(page.locator("#deploy")).to_be_disabled()
    expect(page.locator("#check-state")).to_have_text(re.compile("1 error"))
    shot(page, "02-editor-error")

    # clicking the problem puts the caret on its line and column
    problem.click()
    expect(editor).to_be_focused()
    caret = page.evaluate("() => document.getElementById('source').selectionStart")
    assert broken[:caret].count("\n") == ERROR_LINE - 1
    assert broken[caret:].startswith("sedn")

    # ---- fix it: delete the typo, type it right
    for _ in range(4):
        page.keyboard.press("Delete")
    page.keyboard.type("send")
    assert editor.input_value() == source
    expect(page.locator("#check-state")).to_have_text(re.compile("No errors"))
    expect(page.locator("#problems li.none")).to_have_text("No problems.")
    expect(page.locator("#gutter .has-error")).to_have_count(0)
    expect(page.locator("#deploy")).to_be_enabled()
    expect(page.locator("#preview-diagram svg .node[data-kind=send]")).to_have_count(1)
    expect(page.locator("#preview-diagram svg")).to_contain_text(f"新会员欢迎 {tag}")
    page.get_by_label("Id", exact=True).fill(journey_id)
    shot(page, "03-editor-ok")

    # ---- deploy: lands on the journey page, every count at zero
    page.locator("#deploy").click()
    page.wait_for_url(re.compile(rf"/console/journeys/{journey_id}$"))
    expect(page.get_by_role("heading", name=f"新会员欢迎 {tag}")).to_be_visible()
    send_id = page.locator("#diagram g.node[data-kind=send]").get_attribute("data-node-id")
    wait_id = page.locator("#diagram g.node[data-kind=wait]").get_attribute("data-node-id")
    assert send_id and wait_id
    page.wait_for_function("() => Number(document.getElementById('journey').dataset.polls || 0) >= 1")
    expect(_count(page, "__entry__", "entered")).to_have_text("0")
    expect(_count(page, send_id, "sent")).to_have_text("0")
    page.evaluate("() => { window.__sameDocument = true; }")  # gone if the page reloads

    # ---- events through the Segment API (write key): one reachable, one not
    with httpx.Client(base_url=live.url, auth=(WRITE, ""), timeout=30) as seg:
        r = seg.post(
            "/v1/identify",
            json={
                "userId": member,
                "traits": {"wecom_external_userid": f"wx-{member}", "phone": "+86 139-1234-5678", "nickname": "小明"},
            },
        )
        assert r.status_code == 200, r.text
        for user in (member, other):
            r = seg.post("/v1/track", json={"userId": user, "event": event, "messageId": unique("msg")})
            assert r.status_code == 200, r.text

    # ---- the numbers change in place
    expect(_count(page, "__entry__", "entered")).to_have_text("2")
    expect(_count(page, send_id, "sent")).to_have_text("1")
    expect(_count(page, send_id, "suppressed")).to_have_text("1")
    expect(_count(page, wait_id, "waiting")).to_have_text("2")
    expect(page.locator('[data-summary="entered"]')).to_have_text("2")
    expect(page.locator('[data-summary="active"]')).to_have_text("2")
    assert page.evaluate("() => window.__sameDocument === true"), "the page reloaded instead of updating in place"
    shot(page, "04-journey-live")

    # ---- the node panel: deliveries of the send step, users waiting at the wait step
    page.locator(f'#diagram g.node[data-node-id="{send_id}"]').click()
    deliveries = page.locator("#node-panel table.deliveries")
    expect(deliveries).to_contain_text("sent")
    expect(deliveries).to_contain_text("suppressed")
    wait_node = page.locator(f'#diagram g.node[data-node-id="{wait_id}"]')
    wait_node.focus()
    wait_node.press("Enter")  # keyboard opens the panel too
    expect(page.locator("#node-panel ul.waiting li")).to_have_count(2)
    expect(page.locator("#node-panel")).not_to_contain_text("null")
    shot(page, "05-node-panel")

    # the suppressed user's reason is on their page
    uid_other = page.locator("#node-panel ul.waiting a").all_inner_texts()
    assert len(uid_other) == 2

    # ---- a goal event: conversion shows on the page
    with httpx.Client(base_url=live.url, auth=(WRITE, ""), timeout=30) as seg:
        r = seg.post(
            "/v1/track",
            json={"userId": member, "event": "order_paid", "properties": {"amount": 99}, "messageId": unique("msg")},
        )
        assert r.status_code == 200, r.text
    expect(page.locator('[data-summary="converted"]')).to_have_text("1")
    expect(page.locator('[data-summary="conversion_rate"]')).to_have_text("50.0%")
    expect(_count(page, wait_id, "waiting")).to_have_text("1")
    expect(page.locator("#variants tbody")).to_contain_text("50.0%")

    # ---- a second version, and the diff between the two
    with _api(live) as api:
        r = api.post("/v1/journeys", json={"id": journey_id, "source": source.replace("up to 1d", "up to 2d")})
        assert r.status_code == 201, r.text
    page.reload()
    page.get_by_label("From").select_option("1")
    page.get_by_label("to", exact=True).select_option("2")
    page.get_by_role("button", name="Show diff").click()
    expect(page.locator("#diff .del")).to_contain_text(["up to 1d"])
    expect(page.locator("#diff .add")).to_contain_text(["up to 2d"])
    page.locator("#versions").scroll_into_view_if_needed()
    shot(page, "06-journey-versions")

    # ---- the list: numbers and pause/resume
    page.get_by_role("link", name="Journeys", exact=True).click()
    row = page.locator(f'tr[data-journey-id="{journey_id}"]')
    expect(row.locator('[data-key="in_now"]')).to_have_text("1")
    expect(row).to_contain_text(f"新会员欢迎 {tag}")
    shot(page, "07-journeys")
    row.get_by_role("button", name="Pause").click()
    expect(row.locator(".status")).to_have_text("paused")
    row.get_by_role("button", name="Resume").click()
    expect(row.locator(".status")).to_have_text("active")

    # ---- the user page: search by phone in another spelling, Enter submits
    search = page.get_by_placeholder(re.compile("Find user"))
    search.fill("139 1234 5678")
    search.press("Enter")
    page.wait_for_url(re.compile(r"/console/users/u"))
    expect(page.locator("#h-profile + dl")).to_contain_text("小明")
    expect(page.locator(".tags")).to_contain_text("ordered")
    timeline = page.locator("#timeline")
    expect(timeline).to_contain_text(f"wecom · {template}: sent")
    expect(timeline).to_contain_text("tag")
    shot(page, "08-user")

    # the unreachable user's suppression and its reason
    page.goto(live.url + "/console/users?q=" + other)
    page.wait_for_url(re.compile(r"/console/users/u"))
    suppressed = page.locator("#timeline li.tl-delivery.st-suppressed")
    expect(suppressed).to_contain_text("suppressed because: unreachable on wecom")
    shot(page, "09-user-suppressed")

    # ---- template preview in the editor of the deployed journey
    page.goto(live.url + f"/console/editor?journey={journey_id}")
    expect(page.locator("#check-state")).to_have_text(re.compile("No errors"))
    page.get_by_label("Template").select_option(template)
    page.get_by_label("for user").fill(member)
    page.get_by_label("for user").press("Enter")
    expect(page.locator("#preview-body")).to_have_text("欢迎加入，小明！新人券已到账。")
    expect(page.locator("#preview-out")).not_to_contain_text("null")
    shot(page, "10-editor-preview")

    assert page.console_errors == [], page.console_errors


def test_viewer_sees_numbers_but_cannot_act(live: LiveStack, page: Any) -> None:
    journey_id = unique("viewer-view")
    with _api(live) as api:
        r = api.post(
            "/v1/journeys",
            json={"id": journey_id, "source": 'journey "只读查看"\n  entry api\n  send webhook "hook"\n'},
        )
        assert r.status_code == 201, r.text
    _login(page, live, f"/console/journeys/{journey_id}", key=VIEWER)
    page.wait_for_function("() => Number(document.getElementById('journey').dataset.polls || 0) >= 1")
    expect(page.get_by_role("button", name="Pause")).to_have_count(0)
    expect(page.get_by_role("button", name="Stop")).to_have_count(0)
    expect(page.locator("#live-state")).to_contain_text("Live")
    page.goto(live.url + "/console/editor")
    expect(page.locator("#check-state")).to_have_text(re.compile("No errors"))
    expect(page.locator("#deploy")).to_be_disabled()
    assert page.console_errors == [], page.console_errors


def test_stop_from_the_list_ends_running_runs(live: LiveStack, page: Any) -> None:
    journey_id = unique("stoppable")
    with _api(live) as api:
        r = api.post(
            "/v1/journeys",
            json={"id": journey_id, "source": 'journey "可停止"\n  entry api\n  wait 7d\n  send webhook "hook"\n'},
        )
        assert r.status_code == 201, r.text
        _login(page, live, "/console/journeys")
        row = page.locator(f'tr[data-journey-id="{journey_id}"]')
        expect(row.locator('[data-key="in_now"]')).to_have_text("0")
        r = api.post(f"/v1/journeys/{journey_id}/runs", json={"user_ids": [unique("u"), unique("u")]})
        assert r.status_code == 202, r.text
    # runs register in the store once their workflow begins; the list
    # refreshes its numbers in place (no reload here)
    expect(row.locator('[data-key="in_now"]')).to_have_text("2", timeout=30_000)
    assert int(page.locator("#journeys").get_attribute("data-refreshes") or 0) >= 1
    expect(page.locator("#list-state")).to_contain_text("Updated")
    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Stop").click()
    expect(row.locator(".status")).to_have_text("stopped")
    expect(row.locator('[data-key="in_now"]')).to_have_text("0", timeout=30_000)
    # stopped is for good (engine.lifecycle: only archiving follows): no way back offered
    for name in ("Resume", "Pause", "Stop"):
        expect(row.get_by_role("button", name=name)).to_have_count(0)
    assert page.console_errors == [], page.console_errors


def test_numbers_of_one_version(live: LiveStack, page: Any) -> None:
    """The version picker: all versions together by default, one version's
    numbers (and its own diagram) when picked; the node panel follows."""
    journey_id = unique("versions")
    v1 = 'journey "两个版本"\n  entry api\n  send webhook "hook"\n'
    v2 = v1 + "  tag add second\n"
    with _api(live) as api:
        assert api.post("/v1/journeys", json={"id": journey_id, "source": v1}).status_code == 201
        r = api.post(f"/v1/journeys/{journey_id}/runs", json={"user_ids": [unique("u"), unique("u")]})
        assert r.status_code == 202, r.text
        for _ in range(100):  # each run records its entry once its workflow begins
            if api.get(f"/v1/journeys/{journey_id}/stats").json()["summary"]["entered"] == 2:
                break
            page.wait_for_timeout(100)
        assert api.post("/v1/journeys", json={"id": journey_id, "source": v2}).status_code == 201
        r = api.post(f"/v1/journeys/{journey_id}/runs", json={"user_ids": [unique("u")]})
        assert r.status_code == 202, r.text
    _login(page, live, f"/console/journeys/{journey_id}")
    entered = page.locator('[data-summary="entered"]')
    expect(entered).to_have_text("3", timeout=20_000)
    picker = page.get_by_label("Numbers for")
    expect(picker).to_have_value("")
    picker.select_option("1")
    page.wait_for_url(re.compile(r"\?version=1$"))
    expect(entered).to_have_text("2", timeout=20_000)
    expect(page.locator("#diagram g.node")).to_have_count(3)  # v1 as drawn: entry, send, end
    page.locator("#diagram g.node", has_text="hook").first.click()
    expect(page.locator("#node-panel")).to_contain_text("Deliveries (2)", timeout=20_000)
    shot(page, "journey-version-1")
    page.get_by_label("Numbers for").select_option("2")
    page.wait_for_url(re.compile(r"\?version=2$"))
    expect(entered).to_have_text("1", timeout=20_000)
    expect(page.locator("#diagram g.node")).to_have_count(4)
    assert page.console_errors == [], page.console_errors


def test_count_an_event_per_entry(live: LiveStack, page: Any) -> None:
    """A referral's "new users won per user reached": ``friend_joined`` events
    after entry, per variant, next to the conversion numbers."""
    journey_id = unique("referral")
    event = unique("joined").replace("-", "_")
    source = f'journey "邀请有礼"\n  entry event {event}\n  reentry once\n  send webhook "invite"\n'
    inviters = [unique("inviter"), unique("inviter")]
    with _api(live) as api:
        assert api.post("/v1/journeys", json={"id": journey_id, "source": source}).status_code == 201
        for user in inviters:
            r = api.post("/v1/track", json={"userId": user, "event": event}, auth=(WRITE, ""), headers={})
            assert r.status_code == 200, r.text
        for _ in range(100):  # each run records its entry once its workflow begins
            if api.get(f"/v1/journeys/{journey_id}/stats").json()["summary"]["entered"] == 2:
                break
            page.wait_for_timeout(100)
        for _ in range(3):
            r = api.post("/v1/track", json={"userId": inviters[0], "event": "friend_joined"}, auth=(WRITE, ""))
            assert r.status_code == 200, r.text
    _login(page, live, f"/console/journeys/{journey_id}")
    page.get_by_label("Count per entry").fill("friend_joined")
    page.get_by_role("button", name="Show", exact=True).click()
    page.wait_for_url(re.compile(r"per_entry=friend_joined"))
    row = page.locator("#variants tbody tr").first
    expect(row.locator('[data-key="events"]')).to_have_text("3", timeout=20_000)
    expect(row.locator('[data-key="per_entry"]')).to_have_text("1.50")
    expect(page.locator("#variants thead")).to_contain_text("friend_joined")
    shot(page, "journey-per-entry")
    assert page.console_errors == [], page.console_errors


def test_an_admin_makes_and_revokes_a_key(live: LiveStack, page: Any) -> None:
    _login(page, live, "/console/keys")
    name = unique("运营小组")
    page.get_by_label("For").fill(name)
    page.get_by_label("Role").select_option("operator")
    page.get_by_role("button", name="Create").click()
    shown = page.locator("#new-key-value")
    expect(shown).to_have_text(re.compile(r"^jk_"))
    key = shown.inner_text()
    with httpx.Client(base_url=live.url, timeout=30) as http:
        assert http.get("/v1/journeys", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        page.reload()
        row = page.locator("#keys tr", has_text=name)
        expect(row).to_contain_text("operator")
        expect(row).to_contain_text(key[-4:])
        assert key not in page.content()  # listed by its last characters only
        shot(page, "keys")
        page.once("dialog", lambda dialog: dialog.accept())
        row.get_by_role("button", name="Revoke").click()
        expect(page.locator("#keys tr", has_text=name)).to_contain_text("revoked")
        assert http.get("/v1/journeys", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert page.console_errors == [], page.console_errors


def test_only_admins_see_keys(live: LiveStack, page: Any) -> None:
    _login(page, live, "/console/journeys", key=VIEWER)
    expect(page.get_by_role("link", name="Keys")).to_have_count(0)
    assert page.goto(live.url + "/console/keys").status == 403
