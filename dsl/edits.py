"""Structured edits of journey text (the diagram editor's operations).

The text stays the one source of truth: an edit parses the current text,
finds the lines of the steps it names by their spans (``dsl._edit_layout``),
and splices only those lines — new lines in the formatter's canonical form
(``dsl._edit_text``), moved lines re-indented, every other line (comments
and blank lines included) kept byte for byte. The answer carries the inverse
edit: a ``restore_lines`` splice that gives back the exact original bytes,
refusing to apply when the lines it replaces have changed since.

An edit parses its input once and its output once. The diagram editor sends
back the text its last edit answered, so the parsed journeys of the last few
texts are kept (``_PARSED``): a run of edits parses each text once in all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from dsl._edit_layout import Layout, Placed, layout, step_blocks
from dsl._edit_text import block_head, fits_inline, head_texts, header_lines, one_line, step_lines
from dsl.errors import JourneyError
from dsl.formatter import INDENT, LINES, _trailing_comment, name
from dsl.ir import (
    Branch,
    CouponStep,
    GotoStep,
    IfStep,
    Journey,
    LabelStep,
    PassStep,
    SplitStep,
    Step,
    Variant,
    WaitEventStep,
    _strip_spans,
    iter_steps,
)
from dsl.parser import parse

_STEP = TypeAdapter(Step)


class EditError(Exception):
    """An edit that cannot be made; ``code`` is stable, ``message`` for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Edit(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Position(_Edit):
    """After step ``after``, or at the start of block ``block`` of step
    ``parent`` (``parent`` null: the journey's top-level steps). A block that
    holds only ``pass`` gets the new step in the ``pass``'s place."""

    after: str | None = None
    parent: str | None = None
    block: str | None = None


class NewStep(_Edit):
    """A step as IR JSON (``step``) or as DSL text (``text``: one line, or a
    block of lines for a compound step)."""

    step: dict[str, Any] | None = None
    text: str | None = None


class ReplaceStep(NewStep):
    """Set a step's fields. A compound step of the same shape (as many
    branches, variants with and without steps) keeps its blocks: only its head
    lines change. A label's new name is followed by the gotos to it."""

    op: Literal["replace_step"] = "replace_step"
    node: str
    force: bool = False


class InsertStep(NewStep):
    op: Literal["insert_step"] = "insert_step"
    position: Position


class DeleteStep(_Edit):
    op: Literal["delete_step"] = "delete_step"
    node: str
    force: bool = False


class MoveStep(_Edit):
    op: Literal["move_step"] = "move_step"
    node: str
    position: Position


class AddBranch(_Edit):
    """``else_if`` (with ``cond``, DSL text), ``else``, ``variant`` (``name``,
    ``percent``: taken from the largest variant, so the split still adds up
    to 100), ``out_of_stock``, ``on_event``, ``on_timeout``; the new block
    holds ``pass`` (a variant: nothing)."""

    op: Literal["add_branch"] = "add_branch"
    node: str
    branch: Literal["else_if", "else", "variant", "out_of_stock", "on_event", "on_timeout"]
    cond: str | None = None
    name: str | None = None
    percent: float | None = None


class DeleteBranch(_Edit):
    """Delete a block and its steps (``force`` when it holds any). The first
    branch of an ``if`` hands ``if`` to the next; a deleted variant's percent
    goes to the largest one left."""

    op: Literal["delete_branch"] = "delete_branch"
    node: str
    block: str
    force: bool = False


HeaderField = Literal[
    "name",
    "description",
    "entry",
    "reentry",
    "goal",
    "exits",
    "timezone",
    "quiet_hours",
    "message_limit",
    "when_capped",
    "priority",
]
# the formatter's order of header lines: where a field without a line goes
_HEADER_ORDER: tuple[str, ...] = HeaderField.__args__  # type: ignore[attr-defined]


class SetHeader(_Edit):
    """``value`` is the field's IR JSON (``null`` removes an optional line);
    or ``text``, the field's line(s) as the language writes them (``entry
    event joined where channel == "x"``; empty: remove), which is how a
    form hands over a condition the operator typed."""

    op: Literal["set_header"] = "set_header"
    field: HeaderField
    value: Any = None
    text: str | None = None


class RestoreLines(_Edit):
    """Put ``lines`` back in place of lines ``start``..``start+len(expect)``
    (0-based), which must still read ``expect``: the inverse of every edit."""

    op: Literal["restore_lines"] = "restore_lines"
    start: int = Field(ge=0)
    expect: list[str]
    lines: list[str]


Edit = Annotated[
    ReplaceStep | InsertStep | DeleteStep | MoveStep | AddBranch | DeleteBranch | SetHeader | RestoreLines,
    Field(discriminator="op"),
]
EDIT = TypeAdapter(Edit)


@dataclass
class EditResult:
    source: str
    inverse: RestoreLines
    # 1-based first and last line of the new text that differ from the old;
    # (0, 0) when no line is new (nothing changed, or lines were only removed)
    changed_lines: tuple[int, int]
    journey: Journey


def apply_edit(source: str, edit: Edit) -> EditResult:
    """Apply one edit to journey text; raises ``EditError``."""
    bom = "\ufeff" if source.startswith("\ufeff") else ""
    text = source[len(bom) :]
    if isinstance(edit, RestoreLines):
        lines = text.split("\n")
        end = edit.start + len(edit.expect)
        if lines[edit.start : end] != edit.expect or end > len(lines):
            raise EditError("stale", "the text changed since this edit was made; it cannot be undone")
        new_lines = lines[: edit.start] + edit.lines + lines[end:]
    else:
        lay = layout(text, parsed(text, "source_has_errors", "the text has syntax errors; fix them first"))
        try:
            new_lines = _OPS[type(edit)](lay, edit)
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            # the formatter refuses IR it cannot write (say a send without
            # channels): the edit's fault, not the server's
            raise EditError("bad_edit", f"the edit cannot be written as journey text: {exc}") from None
    new_text = "\n".join(new_lines)
    journey = parsed(new_text, "would_not_parse", "the edit would leave text that does not parse")
    return _result(bom, text.split("\n"), new_lines, journey)


_PARSED: OrderedDict[str, Journey] = OrderedDict()
_PARSED_SIZE = 8
_PARSED_LOCK = threading.Lock()


def parsed(text: str, code: str = "would_not_parse", message: str = "the text does not parse") -> Journey:
    """``parse(text)``, remembered for the last few texts. The journeys are
    shared: nothing here or in the checker and renderers changes one."""
    with _PARSED_LOCK:
        journey = _PARSED.get(text)
        if journey is not None:
            _PARSED.move_to_end(text)
            return journey
    try:
        journey = parse(text, "<edit>")
    except JourneyError as exc:
        first = exc.diagnostics[0] if exc.diagnostics else None
        where = f" (line {first.line}: {first.message})" if first else ""
        raise EditError(code, message + where) from None
    except RecursionError:
        raise EditError(code, message + " (nested too deeply)") from None
    with _PARSED_LOCK:
        _PARSED[text] = journey
        while len(_PARSED) > _PARSED_SIZE:
            _PARSED.popitem(last=False)
    return journey


def _result(bom: str, old: list[str], new: list[str], journey: Journey) -> EditResult:
    lead = 0
    while lead < min(len(old), len(new)) and old[lead] == new[lead]:
        lead += 1
    tail = 0
    while tail < min(len(old), len(new)) - lead and old[-1 - tail] == new[-1 - tail]:
        tail += 1
    inverse = RestoreLines(start=lead, expect=new[lead : len(new) - tail], lines=old[lead : len(old) - tail])
    changed = (lead + 1, len(new) - tail) if len(new) - tail > lead else (0, 0)
    return EditResult(bom + "\n".join(new), inverse, changed, journey)


# ---------------------------------------------------------------- helpers


def _placed(lay: Layout, node: str) -> Placed:
    placed = lay.steps.get(node)
    if placed is None:
        raise EditError("unknown_node", f"there is no step {node!r}")
    return placed


def _new_step(new: NewStep) -> Step:
    """The step an edit brings, checked to be one the formatter writes and
    the parser reads back as the same step (so IR JSON cannot smuggle in a
    step the text cannot hold)."""
    if (new.step is None) == (new.text is None):
        raise EditError("bad_step", "give the step as IR JSON (step) or as DSL text (text), one of them")
    if new.step is not None:
        try:
            step = _STEP.validate_python(new.step)
            text = "\n".join(step_lines(step, ""))
        except ValidationError as exc:
            raise EditError("bad_step", f"not a step: {exc.errors()[0]['msg']}") from None
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            raise EditError("bad_step", f"not a step the text can hold: {exc}") from None
    else:
        text = new.text or ""
    body = "\n".join("  " + line for line in text.split("\n"))
    try:
        journey = parse(f'journey "x"\n{body}\n', "<step>")
    except JourneyError as exc:
        raise EditError("bad_step", f"not a step: {exc.diagnostics[0].message}") from None
    except RecursionError:
        raise EditError("bad_step", "not a step: nested too deeply") from None
    if len(journey.steps) != 1:
        raise EditError("bad_step", "the text must hold exactly one step")
    step = journey.steps[0]
    if new.step is not None and _content(step) != _content(_STEP.validate_python(new.step)):
        raise EditError("bad_step", "the step does not survive being written as text (check its names)")
    return step


def _content(step: Step) -> object:
    """What a step says: its dump without ids and spans, at every depth."""
    return _bare(_strip_spans(step.model_dump(mode="json")))


def _bare(value: object) -> object:
    if isinstance(value, dict):
        return {k: _bare(v) for k, v in value.items() if k != "id"}
    if isinstance(value, list):
        return [_bare(v) for v in value]
    return value


def _holds_steps(step: Step) -> bool:
    return any(not isinstance(s, PassStep) for block in step.blocks() for s in block)


def _eol_at(lay: Layout, index: int) -> str:
    return "\r" if lay.lines[index].endswith("\r") else ""


def _eol(lay: Layout) -> str:
    """The line ending most lines have, for lines an edit adds."""
    return "\r" if sum(line.endswith("\r") for line in lay.lines) * 2 > len(lay.lines) else ""


def _comment_of(lay: Layout, step: Step) -> str:
    """The end-of-line comment on the step's line, with the blanks before it."""
    return _line_comment(lay.code(lay.head(step)))


def _line_comment(code: str) -> str:
    return code[len(_code_part(code)) :]


def _end(lay: Layout, span: Any, inline: Step | None = None) -> int:
    """Where the statement starting at ``span`` ends on its line (0-based,
    exclusive): before a head's ``:`` — the one ahead of ``inline``, the
    block's step sharing the line, when there is one — or at the end of the
    code. Spans' own ends are not used: they can stop short of a closing
    ``]`` or ``)`` (``if x in ["a", "b"]`` ends after ``"b"``)."""
    code = lay.code(span.line - 1)
    stop = inline.span.column - 1 if inline is not None and inline.span is not None else len(_code_part(code))
    text = code[:stop].rstrip()
    if text.endswith(":"):
        text = text[:-1].rstrip()
    return len(text)


def _inline_in(lay: Layout, span: Any, steps: list[Step]) -> Step | None:
    """The block's step that shares the head's line (``40% A: exit``)."""
    if steps and steps[0].span is not None and steps[0].span.line == span.line and lay.inline(steps[0]):
        return steps[0]
    return None


def _splice(lay: Layout, lines: list[str], span: Any, text: str, inline: Step | None = None) -> None:
    """Put ``text`` in place of the statement at ``span`` on its line."""
    index = span.line - 1
    code = lay.code(index)
    lines[index] = code[: span.column - 1] + text + code[_end(lay, span, inline) :] + _eol_at(lay, index)


def _flat(lines: list[str]) -> list[str]:
    """Entries that grew into several lines (``"a\\nb"``) split back; edits
    put several lines in one entry so the indices of the others hold."""
    return "\n".join(lines).split("\n")


def _indented(new: list[str], indent: str, eol: str) -> list[str]:
    return [indent + t + eol if t.strip() else t for t in new]


def _expand(lay: Layout, lines: list[str], step: Step) -> str:
    """Turn the inline block holding ``step`` (``else: exit``) into an
    indented one, in entry ``lay.head(step)`` of ``lines``; returns the
    block's indent."""
    assert step.span is not None
    line = lay.head(step)
    code = lay.code(line)
    indent = lay.indent(line) + INDENT
    head = code[: step.span.column - 1].rstrip()
    eol = _eol_at(lay, line)
    body = code[step.span.column - 1 : _end(lay, step.span)]
    lines[line] = f"{head}{_comment_of(lay, step)}{eol}\n{indent}{body}{eol}"
    return indent


def _comments_above(lay: Layout, index: int) -> int:
    """The first of the comment lines right above line ``index`` (or it)."""
    while index > 0 and lay.code(index - 1).strip().startswith("#"):
        index -= 1
    return index


def _walk(block: list[Step]) -> list[Step]:
    return list(iter_steps(block))


# ---------------------------------------------------------------- placing steps


def _block_of(lay: Layout, parent: str | None, name: str) -> list[Step]:
    if parent is None:
        if name != "steps":
            raise EditError("unknown_block", "the journey's own block is called 'steps'")
        return lay.journey.steps
    blocks = step_blocks(_placed(lay, parent).step)
    if name not in blocks:
        known = ", ".join(blocks) or "none"
        raise EditError("unknown_block", f"step {parent!r} has no block {name!r} (it has: {known})")
    return blocks[name]


def _insert_at(lay: Layout, lines: list[str], position: Position, new: list[str], inline_ok: bool) -> list[str]:
    """``new`` (lines without indent) put at ``position``; returns flat lines."""
    eol = _eol(lay)
    if position.after is not None:
        placed = _placed(lay, position.after)
        block, anchor, after = placed.block, placed.step, True
    else:
        block = _block_of(lay, position.parent, position.block or "steps")
        if not block:
            return _into_empty(lay, lines, position, new)
        anchor, after = block[0], False
    if len(block) == 1 and isinstance(block[0], PassStep):
        return _over_pass(lay, lines, block[0], new, inline_ok)
    if lay.inline(anchor):
        indent = _expand(lay, lines, anchor)
        at = lay.head(anchor) + (2 if after else 1)
        lines = _flat(lines)
    else:
        indent = lay.indent(lay.head(anchor))
        at = lay.end(anchor) + 1 if after else lay.first(anchor)
    lines[at:at] = _indented(new, indent, eol)
    return _flat(lines)


def _over_pass(lay: Layout, lines: list[str], stand_in: PassStep, new: list[str], inline_ok: bool) -> list[str]:
    """A block's lone ``pass`` gives its place to ``new``: a placeholder, not
    a step anyone means to keep next to a real one."""
    assert stand_in.span is not None
    head = lay.head(stand_in)
    if lay.inline(stand_in):
        if len(new) == 1 and inline_ok:
            _splice(lay, lines, stand_in.span, new[0])
            return lines
        indent = _expand(lay, lines, stand_in)
        first = lines[head].split("\n", 1)[0]
        lines[head] = "\n".join([first, *_indented(new, indent, _eol_at(lay, head))])
        return _flat(lines)
    eol = _eol_at(lay, head)
    body = _indented(new, lay.indent(head), eol)
    body[0] = body[0].removesuffix(eol) + _comment_of(lay, stand_in) + eol
    lines[head] = "\n".join(body)
    return _flat(lines)


def _into_empty(lay: Layout, lines: list[str], position: Position, new: list[str]) -> list[str]:
    """The first steps of a variant without any (``10% C`` → ``10% C:``)."""
    owner = _placed(lay, position.parent).step if position.parent else None
    if not isinstance(owner, SplitStep):
        raise EditError("unknown_block", "that block holds no steps; add the branch first")
    variant = next(v for v in owner.variants if f"variant:{v.name}" == position.block)
    assert variant.span is not None
    index = variant.span.line - 1
    code, eol = lay.code(index), _eol_at(lay, index)
    end = _end(lay, variant.span)
    head = code[:end] + ":" + code[end:] + eol
    lines[index] = "\n".join([head, *_indented(new, lay.indent(index) + INDENT, eol)])
    return _flat(lines)


def _delete(lay: Layout, node: str) -> list[str]:
    """The lines with the step (and the comments right above it) removed; the
    only step of a block becomes ``pass``."""
    placed = _placed(lay, node)
    step, lines = placed.step, list(lay.lines)
    assert step.span is not None
    head, eol = lay.head(step), _eol_at(lay, lay.head(step))
    if lay.inline(step):
        _splice(lay, lines, step.span, "pass")
        return lines
    if len(placed.block) == 1:
        lines[lay.first(step) : lay.end(step) + 1] = [lay.indent(head) + "pass" + eol]
        return lines
    del lines[lay.first(step) : lay.end(step) + 1]
    return lines


# ---------------------------------------------------------------- the operations


def _replace(lay: Layout, edit: ReplaceStep) -> list[str]:
    placed = _placed(lay, edit.node)
    old, new = placed.step, _new_step(edit)
    lines = list(lay.lines)
    same_shape = type(old) is type(new) and _shape(old) == _shape(new)
    if not same_shape and _holds_steps(old) and not edit.force:
        raise EditError("not_empty", f"step {edit.node!r} holds steps; replacing it drops them (force to confirm)")
    if same_shape and not one_line(old):
        for (span, inline), text in zip(_head_spans(lay, old), head_texts(new), strict=True):
            _splice(lay, lines, span, text, inline)
        if isinstance(old, SplitStep) and isinstance(new, SplitStep) and new.test and new.test.otherwise:
            index = lay.otherwise_line(old)
            assert index is not None
            code = lay.code(index)
            lines[index] = (
                lay.indent(index) + f"otherwise: {name(new.test.otherwise)}" + _line_comment(code) + _eol_at(lay, index)
            )
        return lines
    if one_line(old) and one_line(new) and (not lay.inline(old) or fits_inline(new)):
        assert old.span is not None
        _splice(lay, lines, old.span, head_texts(new)[0])
        if isinstance(old, LabelStep) and isinstance(new, LabelStep) and old.name != new.name:
            _follow_label(lay, lines, old.name, new.name)
        return lines
    head = lay.head(old)
    if lay.inline(old):
        indent = _expand(lay, lines, old)
        first = lines[head].split("\n", 1)[0]
        lines[head] = "\n".join([first, *_indented(step_lines(new, ""), indent, _eol_at(lay, head))])
        return _flat(lines)
    eol = _eol(lay)
    body = _indented(step_lines(new, ""), lay.indent(head), eol)
    code = lay.code(head)
    body[0] = body[0].removesuffix(eol) + _line_comment(code) + eol  # the head's comment stays
    lines[head : lay.end(old) + 1] = body
    return lines


def _follow_label(lay: Layout, lines: list[str], old: str, new: str) -> None:
    for step in iter_steps(lay.journey.steps):
        if isinstance(step, GotoStep) and step.label == old:
            _splice(lay, lines, step.span, LINES[GotoStep](GotoStep(label=new)))


def _shape(step: Step) -> tuple[object, ...]:
    """What must stay for a replacement to keep a compound step's blocks."""
    if isinstance(step, IfStep):
        return (len(step.branches), step.else_steps is not None)
    if isinstance(step, SplitStep):
        return (*(bool(v.steps) for v in step.variants), step.test is not None and step.test.otherwise is not None)
    if isinstance(step, WaitEventStep):
        return (bool(step.on_event), bool(step.on_timeout))
    if isinstance(step, CouponStep):
        return (step.out_of_stock is not None,)
    return ()


def _head_spans(lay: Layout, step: Step) -> list[tuple[Any, Step | None]]:
    """Each head's span (as ``head_texts`` lists them) and the block step
    sharing its line, if one does."""
    if isinstance(step, IfStep):
        return [(b.span, _inline_in(lay, b.span, b.steps)) for b in step.branches]
    if isinstance(step, SplitStep):
        return [(step.span, None), *((v.span, _inline_in(lay, v.span, v.steps)) for v in step.variants)]
    return [(step.span, None)]


def _insert(lay: Layout, edit: InsertStep) -> list[str]:
    step = _new_step(edit)
    return _insert_at(lay, list(lay.lines), edit.position, step_lines(step, ""), fits_inline(step))


def _delete_step(lay: Layout, edit: DeleteStep) -> list[str]:
    step = _placed(lay, edit.node).step
    if _holds_steps(step) and not edit.force:
        raise EditError("not_empty", f"step {edit.node!r} holds steps; deleting it deletes them (force to confirm)")
    return _delete(lay, edit.node)


def _move(lay: Layout, edit: MoveStep) -> list[str]:
    """Cut the step (its comments with it), then paste it at the position.
    The position names steps of the text before the cut; they are found
    again by their lines, since cutting can renumber ids of twins."""
    placed = _placed(lay, edit.node)
    step = placed.step
    inside = {s.id for s in _walk([step])}
    if edit.position.after in inside or edit.position.parent in inside:
        raise EditError("bad_position", "a step cannot move into itself")
    anchor = (
        _placed(lay, edit.position.after or edit.position.parent).step
        if edit.position.after or edit.position.parent
        else None
    )
    if lay.inline(step):
        assert step.span is not None
        moved = [lay.code(lay.head(step))[step.span.column - 1 : _end(lay, step.span)]]
        first = last = kept = 0
    else:
        base = lay.indent(lay.head(step))
        moved = []
        for i in range(lay.first(step), lay.end(step) + 1):
            code = lay.code(i)
            moved.append(code[len(base) :] if code.startswith(base) else code.strip())
        first, last = lay.first(step), lay.end(step)
        kept = 1 if len(placed.block) == 1 else 0  # the pass left behind
    cut_lines = _delete(lay, edit.node)
    cut = "\n".join(cut_lines)
    after = layout(cut, parsed(cut, "would_not_parse", "the step cannot be cut out there"))
    position = edit.position
    if anchor is not None:
        assert anchor.span is not None
        line = anchor.span.line - 1
        if not lay.inline(step) and line > last:
            line -= last - first + 1 - kept
        found = next(
            (
                s
                for s in iter_steps(after.journey.steps)
                if s.span and (s.span.line - 1, s.span.column) == (line, anchor.span.column)
            ),
            None,
        )
        if found is None:  # pragma: no cover - the cut keeps every other step's line
            raise EditError("bad_position", "the position was lost cutting the step out")
        position = Position(after=found.id) if edit.position.after else Position(parent=found.id, block=position.block)
    return _insert_at(after, list(after.lines), position, moved, fits_inline(step))


def _add_branch(lay: Layout, edit: AddBranch) -> list[str]:
    step = _placed(lay, edit.node).step
    lines, eol = list(lay.lines), _eol(lay)
    indent = lay.indent(lay.head(step))
    if isinstance(step, IfStep) and edit.branch in ("else_if", "else"):
        if edit.branch == "else":
            if step.else_steps is not None:
                raise EditError("exists", "this if already has an else")
            stand_in = step.model_copy(update={"else_steps": [PassStep()]})
            at = lay.end(step) + 1
            new = [indent + block_head(stand_in, "else") + eol, indent + INDENT + "pass" + eol]
        else:
            cond = _cond(edit.cond)
            stand_in = step.model_copy(update={"branches": [*step.branches, Branch(cond=cond, steps=[PassStep()])]})
            at = lay.end(step.branches[-1].steps[-1]) + 1
            head = block_head(stand_in, f"branch:{len(step.branches)}")
            new = [indent + head + eol, indent + INDENT + "pass" + eol]
        lines[at:at] = new
        return lines
    if isinstance(step, SplitStep) and edit.branch == "variant":
        return _add_variant(lay, lines, step, edit)
    if isinstance(step, CouponStep) and edit.branch == "out_of_stock":
        if step.out_of_stock is not None:
            raise EditError("exists", "this coupon has an on out_of_stock branch already")
        head = block_head(step, "out_of_stock")
        lines.insert(lay.head(step) + 1, indent + INDENT + head + " pass" + eol)
        return lines
    if isinstance(step, WaitEventStep) and edit.branch in ("on_event", "on_timeout"):
        if step_blocks(step).get(edit.branch):
            raise EditError("exists", f"this wait already has {edit.branch.replace('_', ' ')}")
        new = [indent + INDENT + block_head(step, edit.branch) + " pass" + eol]
        if not step.on_event and not step.on_timeout:
            assert step.span is not None
            code = lay.code(lay.head(step))
            end = _end(lay, step.span)
            lines[lay.head(step)] = code[:end] + ":" + code[end:] + _eol_at(lay, lay.head(step))
            at = lay.head(step) + 1
        elif edit.branch == "on_timeout":
            at = lay.end(step) + 1
        else:
            at = _comments_above(lay, lay.block_head(step.on_timeout))
        lines[at:at] = new
        return lines
    raise EditError("bad_branch", f"a {step.kind} step cannot get a {edit.branch} branch")


def _add_variant(lay: Layout, lines: list[str], step: SplitStep, edit: AddBranch) -> list[str]:
    if not edit.name or edit.percent is None:
        raise EditError("bad_branch", "a variant needs a name and a percent")
    if any(v.name == edit.name for v in step.variants):
        raise EditError("exists", f"there is a variant {edit.name!r} already")
    if not 0 < edit.percent < 100:
        raise EditError("bad_branch", "a new variant's percent is more than 0 and less than 100")
    if _adds_up(step.variants):
        donor = max(step.variants, key=lambda v: v.percent)  # the first of the largest
        if donor.percent <= edit.percent:
            raise EditError("bad_branch", f"no variant has more than {edit.percent:g}% to give the new one")
        _set_percent(lay, lines, donor, donor.percent - edit.percent)
    last = step.variants[-1]
    assert last.span is not None
    at = (lay.end(last.steps[-1]) if last.steps else last.span.line - 1) + 1  # before a test's otherwise:
    variant = SplitStep(variants=[Variant(name=edit.name, percent=edit.percent)])
    lines[at:at] = [lay.indent(last.span.line - 1) + head_texts(variant)[1] + _eol(lay)]
    return lines


def _adds_up(variants: list[Variant]) -> bool:
    return abs(sum(v.percent for v in variants) - 100) < 1e-9


def _set_percent(lay: Layout, lines: list[str], variant: Variant, percent: float) -> None:
    text = head_texts(SplitStep(variants=[Variant(name=variant.name, percent=round(percent, 6))]))[1]
    _splice(lay, lines, variant.span, text, _inline_in(lay, variant.span, variant.steps))


def _cond(text: str | None) -> Any:
    if not text:
        raise EditError("bad_branch", "an else if needs a condition (cond, as DSL text)")
    step = _new_step(NewStep(text=f"if {text}: pass"))
    assert isinstance(step, IfStep)
    return step.branches[0].cond


def _delete_branch(lay: Layout, edit: DeleteBranch) -> list[str]:
    step = _placed(lay, edit.node).step
    blocks = step_blocks(step)
    if edit.block not in blocks:
        known = ", ".join(blocks) or "none"
        raise EditError("unknown_block", f"step {edit.node!r} has no block {edit.block!r} (it has: {known})")
    block = blocks[edit.block]
    if any(not isinstance(s, PassStep) for s in block) and not edit.force:
        raise EditError("not_empty", f"{edit.block} holds steps; deleting it deletes them (force to confirm)")
    lines = list(lay.lines)
    if isinstance(step, IfStep):
        if len(step.branches) == 1 and edit.block == "branch:0":
            raise EditError("last_branch", "that is the if's only branch; delete the step instead")
        if edit.block == "branch:0":
            # the second branch takes the first one's line, comments and all
            second = step.branches[1]
            assert second.span is not None
            text = head_texts(IfStep(branches=[Branch(cond=second.cond, steps=[PassStep()])]))[0]
            _splice(lay, lines, second.span, text, _inline_in(lay, second.span, second.steps))
            start, end = lay.head(step), _comments_above(lay, second.span.line - 1) - 1
            del lines[start : end + 1]
            return lines
        start = _block_start(lay, step, edit.block)
        del lines[start : lay.end(block[-1]) + 1]
        return lines
    if isinstance(step, SplitStep):
        if len(step.variants) == 1:
            raise EditError("last_branch", "that is the split's only variant; delete the step instead")
        variant = next(v for v in step.variants if f"variant:{v.name}" == edit.block)
        assert variant.span is not None
        rest = [v for v in step.variants if v is not variant]
        if _adds_up(step.variants):
            heir = max(rest, key=lambda v: v.percent)
            _set_percent(lay, lines, heir, heir.percent + variant.percent)
        start = _comments_above(lay, variant.span.line - 1)
        end = lay.end(variant.steps[-1]) if variant.steps else variant.span.line - 1
        del lines[start : end + 1]
        return lines
    start = _block_start(lay, step, edit.block)
    del lines[start : lay.end(block[-1]) + 1]
    if isinstance(step, WaitEventStep) and len(blocks) == 1:
        # no block left: the head loses its ``:``
        assert step.span is not None
        index, end = lay.head(step), _end(lay, step.span)
        code = lay.code(index)
        rest = code[end:]
        lines[index] = code[:end] + rest.replace(":", "", 1) + _eol_at(lay, index)
    return lines


def _block_start(lay: Layout, step: Step, name: str) -> int:
    """The first line of a block: its head with the comments right above."""
    if isinstance(step, IfStep) and name.startswith("branch:"):
        branch = step.branches[int(name.split(":", 1)[1])]
        assert branch.span is not None
        return _comments_above(lay, branch.span.line - 1)
    return _comments_above(lay, lay.block_head(step_blocks(step)[name]))


def _set_header(lay: Layout, edit: SetHeader) -> list[str]:
    value = edit.value if edit.value is not None or edit.field != "exits" else []
    if edit.text is not None:
        value = _header_text(edit)
    try:
        # the one field validated, not the whole journey (its steps are many)
        changed = lay.journey.model_copy(update={edit.field: _header_type(edit.field).validate_python(value)})
        written = header_lines(changed).get(edit.field, [])
    except ValidationError as exc:
        raise EditError("bad_header", f"not a valid {edit.field}: {exc.errors()[0]['msg']}") from None
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise EditError("bad_header", f"not a {edit.field} the text can hold: {exc}") from None
    if edit.field == "name" and not changed.name:
        raise EditError("bad_header", "a journey needs a name")
    eol = _eol(lay)
    new = [INDENT + t + eol for t in written]
    if edit.field == "name":
        new = [new[0].removeprefix(INDENT)]
    where = _header_lines(lay, edit.field)
    lines = list(lay.lines)
    if where:
        if not new:  # removed: its comments go with it, as a deleted step's do
            for index in reversed(where):
                del lines[_comments_above(lay, index) : index + 1]
            return lines
        # line for line, each keeping its comment; more lines go after the
        # last, fewer leave the last ones out
        for index, text in zip(where, new, strict=False):
            lines[index] = text.removesuffix(eol) + _line_comment(lay.code(index)) + _eol_at(lay, index)
        if len(new) > len(where):
            lines[where[-1]] += "\n" + "\n".join(t.removesuffix(eol) + eol for t in new[len(where) :])
        for index in reversed(where[len(new) :]):
            del lines[index]
        return _flat(lines)
    at = _header_slot(lay, edit.field)
    lines[at:at] = new
    return lines


def _header_text(edit: SetHeader) -> Any:
    """The field's IR JSON read from its line(s) in a journey of its own."""
    if edit.field == "name":
        raise EditError("bad_header", "give the name as value, not text")
    lines = [line.strip() for line in (edit.text or "").split("\n") if line.strip()]
    body = "".join(f"  {line}\n" for line in lines)
    try:
        alone = parse(f'journey "x"\n{body}  pass\n', "<header>")
    except JourneyError as exc:
        raise EditError("bad_header", f"not a {edit.field} line: {exc.diagnostics[0].message}") from None
    except RecursionError:
        raise EditError("bad_header", "nested too deeply") from None
    data = alone.model_dump(mode="json", exclude={"steps"})
    plain = Journey(name="x").model_dump(mode="json", exclude={"steps"})
    others = [k for k in data if k != edit.field and _strip_spans(data[k]) != _strip_spans(plain[k])]
    if others:
        raise EditError("bad_header", f"the text must hold only {edit.field} lines (it also sets {', '.join(others)})")
    return data[edit.field]


_HEADER_TYPES: dict[str, TypeAdapter[Any]] = {}


def _header_type(field: str) -> TypeAdapter[Any]:
    adapter = _HEADER_TYPES.get(field)
    if adapter is None:
        info = Journey.model_fields[field]
        kind = (
            info.annotation if info.discriminator is None else Annotated[info.annotation, Field(discriminator="kind")]
        )
        adapter = _HEADER_TYPES[field] = TypeAdapter(kind)
    return adapter


_WORDS = {
    "name": "journey",
    "description": "description",
    "entry": "entry",
    "reentry": "reentry",
    "goal": "goal",
    "exits": "exit when",
    "timezone": "timezone",
    "quiet_hours": "quiet hours",
    "message_limit": "limit",
    "when_capped": "on capped",
    "priority": "priority",
}


def _header_lines(lay: Layout, field: str) -> list[int]:
    """The lines holding a header field, looked for above the first step (no
    step starts with these words, and the header comes first)."""
    word = _WORDS[field]
    stop = lay.head(lay.journey.steps[0]) if lay.journey.steps else len(lay.lines)
    out = []
    for i in range(stop):
        code = lay.code(i).strip()
        if code == word or code.startswith(word + " ") or code.startswith(word + "\t"):
            out.append(i)
            if field == "name":
                break
    return out


def _code_part(code: str) -> str:
    comment = _trailing_comment(code)
    return code[: len(code) - len(comment)].rstrip() if comment else code


def _header_slot(lay: Layout, field: str) -> int:
    """Where a field without a line goes: after the nearest field before it
    in the formatter's order, else right under the journey line."""
    order = _HEADER_ORDER.index(field)
    for before in reversed(_HEADER_ORDER[1:order]):
        found = _header_lines(lay, before)
        if found:
            return found[-1] + 1
    return _header_lines(lay, "name")[0] + 1


_OPS: dict[type, Any] = {
    ReplaceStep: _replace,
    InsertStep: _insert,
    DeleteStep: _delete_step,
    MoveStep: _move,
    AddBranch: _add_branch,
    DeleteBranch: _delete_branch,
    SetHeader: _set_header,
}
