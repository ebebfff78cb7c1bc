"""Pure pieces: masking log filter, the z-test, durations, Segment mapping."""

from __future__ import annotations

import json
import logging
import math

import pytest

from api.logs import JsonFormatter, MaskFilter, mask_text
from api.routes.stats import duration
from api.segment import Identify, Track, identifiers, profile_attributes
from dsl.parser import parse
from engine.experiments import buckets, holdout_variants, two_proportion_z, variant_rows
from engine.stats import VariantStats


def _emit(message: str, *args: object, **extra: object) -> dict:
    record = logging.LogRecord("journeys.test", logging.INFO, __file__, 1, message, args, None)
    for k, v in extra.items():
        setattr(record, k, v)
    assert MaskFilter().filter(record)
    return json.loads(JsonFormatter().format(record))


def test_log_filter_masks_phones_emails_openids_and_keyed_ids() -> None:
    out = _emit("user phone %s email %s openid %s", "13812345678", "li.lei@example.com", "oAbCdEfGhIjKlMnOpQrStUvWxYz0")
    assert "13812345678" not in out["msg"] and "138****5678" in out["msg"]
    assert "li.lei@example.com" not in out["msg"] and "l***@example.com" in out["msg"]
    assert "oAbCdEfGhIjKlMnOpQrStUvWxYz0" not in out["msg"]
    out = _emit("GET /v1/users/lookup?kind=member_id&value=VIP-000123 200", path="+86 139 0000 1111")
    assert "VIP-000123" not in out["msg"]
    out = _emit('{"phone": "+86 13900001111", "userId": "member-42"}')
    assert "13900001111" not in out["msg"] and "member-42" not in out["msg"]
    out = _emit("done", phone_extra="13700001111", nested={"a": ["13700002222"]})
    assert "13700001111" not in json.dumps(out) and "13700002222" not in json.dumps(out)
    # idempotent and leaves unrelated numbers alone
    assert mask_text(mask_text("call 13812345678")) == "call 138****5678"
    assert mask_text("order 20261123 took 1500 ms") == "order 20261123 took 1500 ms"


def test_log_filter_on_a_real_handler(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("journeys.test.real")
    handler = logging.Handler()
    seen: list[str] = []
    handler.emit = lambda record: seen.append(JsonFormatter().format(record))  # type: ignore[method-assign]
    handler.addFilter(MaskFilter())
    logger.addHandler(handler)
    try:
        logger.warning("failed for %s", "18600001234")
    finally:
        logger.removeHandler(handler)
    assert seen and "18600001234" not in seen[0] and "186****1234" in seen[0]


def test_two_proportion_z_matches_known_values() -> None:
    # 200/1000 vs 150/1000: pooled 0.175, se ≈ 0.016993 → z ≈ 2.9424, p = erfc(z/√2) ≈ 0.003257
    z, p = two_proportion_z(200, 1000, 150, 1000)
    assert z == pytest.approx(2.9424, abs=1e-3)
    assert p == pytest.approx(0.003257, abs=2e-5)
    z, p = two_proportion_z(50, 100, 50, 100)
    assert z == 0 and p == pytest.approx(1.0)
    assert two_proportion_z(0, 0, 1, 10) == (None, None)
    assert two_proportion_z(0, 10, 0, 10) == (None, None)
    z, p = two_proportion_z(10, 10, 0, 10)
    assert p is not None and p < 0.001 and math.isfinite(z)


SPLIT = """journey "split"
  entry event joined
  split:
    40% A: send sms "a"
    40% B: send sms "b"
    20% holdout
"""


def test_variant_rows_test_against_rest_and_holdout() -> None:
    holdouts = holdout_variants(parse(SPLIT))
    assert holdouts == {"holdout"}  # the parser's Variant.holdout, not a list of names
    rows = variant_rows(
        [
            VariantStats("A", 1000, 200),
            VariantStats("B", 1000, 150),
            VariantStats("holdout", 500, 50),
            VariantStats(None, 3, 0),
        ],
        holdouts,
    )
    a = next(r for r in rows if r.variant == "A")
    assert [t.against for t in a.tests] == ["rest", "holdout"]
    assert a.tests[1].significant and a.conversion_rate == 0.2
    assert next(r for r in rows if r.variant is None).tests == []
    holdout = next(r for r in rows if r.variant == "holdout")
    assert [t.against for t in holdout.tests] == ["rest"]


def test_a_variant_named_control_is_not_a_holdout_unless_the_ir_says_so() -> None:
    named = [VariantStats("A", 100, 20), VariantStats("control", 100, 10)]
    a = next(r for r in variant_rows(named, set()) if r.variant == "A")
    assert [t.against for t in a.tests] == ["rest"]
    a = next(r for r in variant_rows(named, {"control"}) if r.variant == "A")
    assert [t.against for t in a.tests] == ["rest", "control"]


def test_durations_and_buckets() -> None:
    from datetime import UTC, datetime, timedelta

    assert duration("3h") == timedelta(hours=3) and duration("30m") == timedelta(minutes=30)
    assert duration(" 1d12h ") == timedelta(hours=36)  # the language's durations, parsed by dsl.durations
    for bad in ("", "0h", "3x", "h", "9999w", "3h junk"):
        with pytest.raises(ValueError):
            duration(bad)
    t0 = datetime(2026, 11, 20, 10, tzinfo=UTC)
    rows = buckets(
        t0,
        t0 + timedelta(hours=3),
        timedelta(hours=1),
        [t0],
        [
            (t0 + timedelta(minutes=5), "sent"),
            (t0 + timedelta(hours=2), "suppressed"),
            (t0 + timedelta(hours=4), "sent"),
        ],
        [t0 + timedelta(hours=1, minutes=1)],
    )
    assert [(r.entered, r.sent, r.suppressed, r.converted) for r in rows] == [(1, 1, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0)]


def test_segment_identifiers_and_traits() -> None:
    msg = Identify.model_validate(
        {
            "userId": 42,
            "anonymousId": "anon-1",
            "traits": {"phone": "13800000000", "email": "A@B.cn", "city": "杭州", "timezone": "Mars/Base"},
            "context": {"traits": {"openid": "o123"}, "timezone": "Asia/Shanghai"},
        }
    )
    assert identifiers(msg, "member_id", msg.traits) == [
        ("member_id", "42"),
        ("anonymous_id", "anon-1"),
        ("phone", "13800000000"),
        ("email", "A@B.cn"),
        ("openid", "o123"),
    ]
    # an invalid zone in traits is dropped, not stored (local-time waits depend on it)
    assert profile_attributes(msg) == {"city": "杭州"}
    msg2 = Identify.model_validate({"userId": "x", "context": {"timezone": "Asia/Shanghai"}})
    assert profile_attributes(msg2) == {"timezone": "Asia/Shanghai"}
    with pytest.raises(ValueError):
        Track.model_validate({"event": "x"})
    with pytest.raises(ValueError):
        Track.model_validate({"userId": "u", "event": "x", "properties": {"n": float("nan")}})
    with pytest.raises(ValueError):
        Track.model_validate({"userId": "u", "event": "x", "timestamp": "0001-01-01T00:00:00+05:00"})
