from __future__ import annotations

import pytest

from engine.store import Store
from engine.templates import (
    TemplateInfo,
    TemplateRenderError,
    build_context,
    mask,
    render,
    upsert_template,
)


def info(body: str, **kw: object) -> TemplateInfo:
    base = {"name": "t", "body": body, "channel_bodies": {}, "subject": None, "transactional": False, "version": 1}
    base.update(kw)
    return TemplateInfo(**base)  # type: ignore[arg-type]


def ctx(**kw: object) -> dict:
    base = dict(
        user_id="u1",
        attributes={"name": "小王"},
        timezone="Asia/Shanghai",
        stage="new",
        rfm=None,
        identifiers={"phone": ["13800138000"]},
        tags=["vip"],
        event=None,
        coupon=None,
        channel="sms",
    )
    base.update(kw)
    return build_context(**base)  # type: ignore[arg-type]


def test_renders_user_event_coupon_and_channel_body() -> None:
    t = info(
        "{{ user.name }} 您好",
        channel_bodies={"sms": "【品牌】{{ user.name }}，券码 {{ coupon.code }}，订单 {{ event.order_id }}"},
    )
    out = render(t, "sms", ctx(coupon={"code": "JC123"}, event={"order_id": "A9"}))
    assert out.body == "【品牌】小王，券码 JC123，订单 A9"
    assert render(t, "push", ctx()).body == "小王 您好"


def test_missing_variable_is_a_clear_error() -> None:
    t = info("券码 {{ coupon.code }}")
    with pytest.raises(TemplateRenderError, match="missing variable.*coupon"):
        render(t, "sms", ctx())  # no coupon issued in this run
    with pytest.raises(TemplateRenderError, match="missing variable"):
        render(info("{{ user.nickname }}"), "sms", ctx())


def test_sandbox_blocks_internals() -> None:
    with pytest.raises(TemplateRenderError):
        render(info("{{ user.__class__.__mro__ }}{{ ''.__class__.__subclasses__() }}"), "sms", ctx())


def test_identifiers_are_masked() -> None:
    out = render(info("{{ user.identifiers.phone }}"), "sms", ctx())
    assert out.body == "138****8000"
    assert mask("email", "alice@example.com") == "a***@example.com"


def test_upsert_bumps_version_only_on_change_and_refuses_bad_syntax(store: Store) -> None:
    assert upsert_template(store, "welcome", "hi {{ user.name }}").version == 1
    assert upsert_template(store, "welcome", "hi {{ user.name }}").version == 1
    assert upsert_template(store, "welcome", "hello {{ user.name }}", transactional=True).version == 2
    with pytest.raises(TemplateRenderError):
        upsert_template(store, "broken", "hi {{ user.name ")


def test_seed_file_loads_templates_and_pools(store: Store, tmp_path) -> None:  # noqa: ANN001
    from engine.coupons import get_pool
    from engine.seed import load_seed_file
    from engine.templates import list_templates

    seed = tmp_path / "seed.toml"
    seed.write_text(
        """
[templates.welcome]
body = "{{ user.name }}，欢迎！"
channels = { sms = "【店】欢迎，回T退订" }

[templates.otp]
body = "验证码 {{ event.code }}"
transactional = true

[pools.first_order]
stock = 5
value = { amount = 20 }
""",
        encoding="utf-8",
    )
    report = load_seed_file(store, seed)
    assert report.templates == ["welcome", "otp"] and report.pools == ["first_order"]
    load_seed_file(store, seed)  # re-running changes nothing
    by_name = {t.name: t for t in list_templates(store)}
    assert by_name["welcome"].channel_bodies == {"sms": "【店】欢迎，回T退订"} and by_name["welcome"].version == 1
    assert by_name["otp"].transactional
    assert get_pool(store, "first_order").stock == 5
