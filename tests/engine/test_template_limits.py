"""Template limits: every way an operator's template could take a worker or
the API down is refused with a reason they can read, in a send, a preview and
(when an empty context already shows it) on save."""

from __future__ import annotations

import sys

import pytest

from engine.store import Store
from engine.template_limits import MAX_EXPONENT, MAX_OUTPUT_CHARS, MAX_RANGE, TemplateLimitError
from engine.templates import TemplateInfo, TemplateRenderError, render, upsert_template, validate


def info(body: str, subject: str | None = None) -> TemplateInfo:
    return TemplateInfo(name="t", body=body, channel_bodies={}, subject=subject, transactional=False, version=3)


def refused(body: str, **context: object) -> str:
    with pytest.raises(TemplateLimitError) as caught:
        render(info(body), "sms", context)
    assert str(caught.value).startswith("template 't' v3: ")
    return str(caught.value)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{{ 'a' * 10**9 }}", "`*` would make 1,000,000,000 characters"),
        ("{{ [0] * 10**6 }}", "`*` would make 1,000,000 characters or items"),
        ("{{ 9 ** (9 ** 9) }}", f"`**` with an exponent over {MAX_EXPONENT}"),
        ("{{ '%999999999d' % 1 }}", "a width of 999999999"),
        ("{{ '{:>999999999}'.format(1) }}", "a width of 999999999"),
        ("{{ 'a'.ljust(10**9) }}", "`ljust` would make"),
        ("{{ 'a' | center(10**9) }}", "the `center` filter would make"),
        ("{{ range(9000) | join('a' * 60000) }}", "the `join` filter would make"),
        ("{{ ('a' * 60000) | replace('a', 'b' * 60000) }}", "the `replace` filter would make"),
        ("{{ '%999999999d' | format(1) }}", "a width of 999999999"),
        ("{% for i in range(10**6) %}{% endfor %}", f"`range` of 1,000,000 numbers, over {MAX_RANGE:,}"),
        ("{% set x = 'a' * 60000 %}{{ x ~ x }}", "`~` would make 120,000 characters"),
    ],
)
def test_growing_operations_are_refused_before_they_compute(body: str, reason: str) -> None:
    assert reason in refused(body)


def test_bigger_products_of_bounded_powers_are_refused() -> None:
    assert "over 4096 bits" in refused(
        "{% set n = 10 ** 99 %}{{ n * n * n * n * n * n * n * n * n * n * n * n * n * n }}"
    )


def test_output_over_the_cap_is_stopped() -> None:
    assert "the template's output is over 64 kB" in refused("{{ text }}", text="a" * (MAX_OUTPUT_CHARS + 1))
    assert render(info("{{ text }}"), "sms", {"text": "a" * MAX_OUTPUT_CHARS}).body == "a" * MAX_OUTPUT_CHARS


def test_output_cap_counts_the_whole_stream_and_the_subject() -> None:
    assert "over 64 kB" in refused("{% for i in range(9000) %}0123456789{% endfor %}")
    with pytest.raises(TemplateLimitError, match="over 64 kB"):
        render(info("hi", subject="{{ 'x' * 60000 }}{{ 'x' * 60000 }}"), "email", {})


def test_a_render_that_would_run_for_minutes_is_stopped_by_the_clock() -> None:
    loops = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    assert "ran longer than 200 ms" in refused(loops)
    over_text = "{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"
    assert "ran longer than" in refused(over_text, s="a" * 50_000)


def test_the_clock_is_one_renders_and_leaves_the_threads_tracer_alone() -> None:
    before = sys.gettrace()
    refused("{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}")
    assert sys.gettrace() is before
    assert render(info("{{ n ** 2 }} {{ 'ab' * 3 }} {{ '%05d' % 7 }}"), "sms", {"n": 12}).body == "144 ababab 00007"
    assert sys.gettrace() is before


def test_ordinary_templates_render_as_before() -> None:
    body = "{{ '{:>4}'.format(n) }}|{{ names | join(', ') }}|{{ 'x' | center(5) }}|{{ 'a-b' | replace('-', '+') }}"
    assert render(info(body), "sms", {"n": 7, "names": ["a", "b"]}).body == "   7|a, b|  x  |a+b"
    assert render(info("{{ 'a' ~ n ~ '<b>' }}"), "sms", {"n": 1}).body == "a1<b>"


def test_lipsum_is_not_there() -> None:
    with pytest.raises(TemplateRenderError, match="lipsum"):
        render(info("{{ lipsum(100000) }}"), "sms", {})


@pytest.mark.parametrize(
    "body",
    [
        "{{ 'a' * 10**9 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{% for i in range(10**7) %}x{% endfor %}",
        "{{ 'a' | center(10**9) }}",
        "{% macro again() %}{{ again() }}{% endmacro %}{{ again() }}",
    ],
)
def test_save_refuses_what_an_empty_context_already_shows(body: str, store: Store) -> None:
    assert validate(body) is not None
    with pytest.raises(TemplateRenderError, match="template 'big'"):
        upsert_template(store, "big", body)


@pytest.mark.parametrize(
    "body",
    [
        "券码 {{ coupon.code }}",
        "{% for o in event.orders %}{{ o.id }}{% endfor %}",
        "{{ 1 / user.count }}",
        "{{ user.n * 3 }}",
    ],
)
def test_save_accepts_templates_that_need_their_data(body: str) -> None:
    assert validate(body) is None


async def test_a_send_over_a_limit_is_a_failed_delivery_with_the_reason(store: Store) -> None:
    """What only the user's data makes too big passes the save and fails the
    send, recorded once with the reason, and is never retried."""
    from engine.events import link_identities
    from tests.engine.test_engine_activities import deliveries, make, send_req

    upsert_template(store, "shout", "{{ user.name * 100000 }}")
    uid = link_identities(store, {"phone": "13800138000"}, attributes={"name": "小王"})
    acts, providers = make(store)
    result = await acts.send(send_req("k1", uid, template="shout"))
    assert result.status == "failed" and "would make 200,000 characters" in result.reason
    assert providers["sms"].calls == []
    [row] = deliveries(store)
    assert (row.status, row.reason) == ("failed", result.reason)
