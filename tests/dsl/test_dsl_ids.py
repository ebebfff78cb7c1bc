"""Step ids come from content, so unrelated edits keep them."""

from __future__ import annotations

from dsl import parse
from dsl.ids import slug
from dsl.ir import iter_steps

from .support import EXAMPLES

BASE = """journey "ids"
  send sms "nudge_a"
  wait 1d
  coupon "new_user_10"
  if tag visited and not tag ordered:
    send sms "nudge_a"
  wait for event order_paid up to 3d:
    on timeout:
      split:
        40% A: pass
        40% B: pass
        20% holdout
  label reminder
  goto reminder
"""


def ids(source: str) -> list[str]:
    return [s.id for s in iter_steps(parse(source).steps)]


def test_ids_are_readable() -> None:
    assert ids(BASE) == [
        "send-sms-nudge_a",
        "wait-1d",
        "coupon-new_user_10",
        "if-visited",
        "send-sms-nudge_a-2",
        "wait-event-order_paid",
        "split-A-B-holdout",
        "pass",
        "pass-2",
        "reminder",
        "goto-reminder",
    ]


def test_unrelated_edits_keep_ids() -> None:
    before = dict(zip([s.span.line for s in iter_steps(parse(BASE).steps)], ids(BASE), strict=True))  # type: ignore[union-attr]
    edited = BASE.replace("wait 1d", "wait 2d").replace(
        'coupon "new_user_10"', '# a comment\n  tag add x\n  coupon "new_user_10"'
    )
    after = set(ids(edited))
    unchanged = set(before.values()) - {"wait-1d"}
    assert unchanged <= after
    assert "wait-2d" in after and "tag-add-x" in after


def test_ids_unique_and_ascii_in_examples() -> None:
    for path in EXAMPLES:
        found = ids(path.read_text(encoding="utf-8"))
        assert len(found) == len(set(found)), path
        assert all(i.isascii() and " " not in i and len(i) <= 52 for i in found), found


def test_slug_keeps_chinese_names_apart() -> None:
    assert slug("上海") != slug("北京")
    assert slug("上海").isascii()
    assert len(slug("x" * 200)) <= 48
