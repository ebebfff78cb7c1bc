"""Canonical text for edited lines, taken from ``dsl.formatter`` itself.

The formatter is the one writer of journey text: whole steps come from its
``BLOCK_WRITERS``/``LINES`` through its writer, and the heads of compound
steps are cut out of what it writes for a stand-in step with ``pass`` bodies,
so an edit never spells a line differently from ``journeys fmt``.
"""

from __future__ import annotations

from dsl.formatter import LINES, _Comments, _header, _is_inline, _Writer, format_journey
from dsl.ir import Branch, CouponStep, IfStep, Journey, PassStep, SplitStep, Step, Variant, WaitEventStep


def step_lines(step: Step, indent: str) -> list[str]:
    """The whole step (blocks included) in canonical form, at ``indent``."""
    return [indent + line if line else line for line in _written(step)]


def _written(step: Step) -> list[str]:
    """The step as the formatter writes it at depth 0."""
    writer = _Writer(_Comments(None), None)
    writer.step(0, step)
    return writer.lines


def one_line(step: Step) -> bool:
    """Is the step one line of text (no block under it)?"""
    return len(_written(step)) == 1


def fits_inline(step: Step) -> bool:
    """Can the step share its block head's line (``else: exit``)?"""
    return _is_inline(step)


def head_texts(step: Step) -> list[str]:
    """The text of each span-covered head of a step, in document order: one
    for most kinds, one per branch for ``if``, the split line then one per
    variant for ``split`` — each without what follows its span (spans end
    before a head's ``:``, which the line keeps)."""
    if isinstance(step, IfStep):
        branches = [b.model_copy(update={"steps": [PassStep()]}) for b in step.branches]
        stand_in = step.model_copy(update={"branches": branches, "else_steps": None})
        return [line.removesuffix(":") for line in _written(stand_in) if not line.startswith(" ")]
    if isinstance(step, WaitEventStep):
        return [_written(step.model_copy(update={"on_event": [], "on_timeout": []}))[0]]
    if isinstance(step, SplitStep):
        stand_in = step.model_copy(
            update={"variants": [Variant(name=v.name, percent=v.percent) for v in step.variants]}
        )
        return [line.strip().removesuffix(":") for line in _written(stand_in)][: 1 + len(step.variants)]
    if isinstance(step, CouponStep):
        return [LINES[CouponStep](step)]
    return [LINES[type(step)](step)]


def block_head(owner: Step, block: str) -> str:
    """The head line of a block as the formatter writes it (``else:``,
    ``on event:``, ``else if COND:``, ``40% A:``), at depth 0."""
    two = [PassStep(), PassStep()]
    if isinstance(owner, WaitEventStep):
        stand_in = WaitEventStep(event=owner.event, on_event=two if block == "on_event" else [])
        stand_in.on_timeout = two if block == "on_timeout" else []
        return _written(stand_in)[1].strip()
    if isinstance(owner, CouponStep):
        return _written(CouponStep(pool=owner.pool, out_of_stock=two))[1].strip()
    if isinstance(owner, IfStep):
        if block == "else":
            stand_in = IfStep(branches=[Branch(cond=owner.branches[0].cond, steps=two)], else_steps=two)
            return _written(stand_in)[-3]
        index = int(block.split(":", 1)[1])
        return head_texts(owner)[index] + ":"
    if isinstance(owner, SplitStep):
        variant = next(v for v in owner.variants if f"variant:{v.name}" == block)
        stand_in = SplitStep(variants=[Variant(name=variant.name, percent=variant.percent, steps=two)])
        return _written(stand_in)[1].strip()  # a variant's head reads the same in a test split
    raise ValueError(f"a {owner.kind} step has no blocks")


def header_lines(journey: Journey) -> dict[str, list[str]]:
    """Each header field's canonical lines, keyed by the field name."""
    out: dict[str, list[str]] = {"name": [format_journey(Journey(name=journey.name)).split("\n")[0]]}
    words = {
        "description": "description",
        "entry": "entry",
        "reentry": "reentry",
        "goal": "goal",
        "exit": "exits",
        "timezone": "timezone",
        "quiet": "quiet_hours",
        "limit": "message_limit",
        "on": "when_capped",
        "priority": "priority",
    }
    for text, _span in _header(journey, {}):
        word = text.split(" ", 1)[0]
        out.setdefault(words.get(word, word), []).append(text)  # a field newer than this table: by its word
    return out
