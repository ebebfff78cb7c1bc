"""Structured edits of journey text (the diagram editor's operations).

The text stays the one source of truth: an edit parses the current text,
finds the lines of the steps it names by their spans (``dsl._edit_layout``),
and splices only those lines — new lines in the formatter's canonical form
(``dsl._edit_text``), moved lines re-indented, every other line (comments
and blank lines included) kept byte for byte. The answer carries the inverse
edit: a ``restore_lines`` splice that gives back the exact original bytes,
refusing to apply when the lines it replaces have changed since.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from dsl._edit_layout import Layout, layout, step_blocks
from dsl._edit_text import block_head, head_texts, header_lines, step_lines
from dsl.errors import JourneyError
from dsl.formatter import INDENT
from dsl.ir import Branch, CouponStep, IfStep, Journey, PassStep, SplitStep, Step, Variant, WaitEventStep
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
    ``parent`` (``parent`` null: the journey's top-level steps)."""

    after: str | None = None
    parent: str | None = None
    block: str | None = None


class NewStep(_Edit):
    """A step as IR JSON (``step``) or as DSL text (``text``: one line, or a
    block of lines for a compound step)."""

    step: dict[str, Any] | None = None
    text: str | None = None


class ReplaceStep(NewStep):
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
    ``percent``), ``out_of_stock``, ``on_event``, ``on_timeout``; the new
    block holds ``pass`` (a variant: nothing)."""

    op: Literal["add_branch"] = "add_branch"
    node: str
    branch: Literal["else_if", "else", "variant", "out_of_stock", "on_event", "on_timeout"]
    cond: str | None = None
    name: str | None = None
    percent: float | None = None


class DeleteBranch(_Edit):
    op: Literal["delete_branch"] = "delete_branch"
    node: str
    block: str
    force: bool = False


HeaderField = Literal[
    "name", "description", "entry", "reentry", "goal", "exits", "timezone", "quiet_hours", "message_limit"
]


class SetHeader(_Edit):
    """``value`` is the field's IR JSON (``null`` removes an optional line)."""

    op: Literal["set_header"] = "set_header"
    field: HeaderField
    value: Any = None


class RestoreLines(_Edit):
    """Put ``lines`` back in place of lines ``start``..``start+len(expect)``
    (0-based), which must still read ``expect``: the inverse of every edit."""

    op: Literal["restore_lines"] = "restore_lines"
    start: int
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
    changed_lines: tuple[int, int]  # 1-based first and last line of the new text that differ (0, 0: none)
    journey: Journey


def apply_edit(source: str, edit: Edit) -> EditResult:
    """Apply one edit to journey text; raises ``EditError``."""
    bom = "\ufeff" if source.startswith("\ufeff") else ""
    text = source[len(bom) :]
    if isinstance(edit, RestoreLines):
        lines = text.split("\n")
        end = edit.start + len(edit.expect)
        if edit.start < 0 or lines[edit.start : end] != edit.expect:
            raise EditError("stale", "the text changed since this edit was made; it cannot be undone")
        new_lines = lines[: edit.start] + edit.lines + lines[end:]
    else:
        lay = layout(text, _parse(text, "source_has_errors", "the text has syntax errors; fix them first"))
        new_lines = _OPS[type(edit)](lay, edit)
    new_text = "\n".join(new_lines)
    journey = _parse(new_text, "would_not_parse", "the edit would leave text that does not parse")
    return _result(bom, text.split("\n"), new_lines, journey)


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


def _parse(text: str, code: str, message: str) -> Journey:
    try:
        return parse(text, "<edit>")
    except JourneyError as exc:
        first = exc.diagnostics[0] if exc.diagnostics else None
        where = f" (line {first.line}: {first.message})" if first else ""
        raise EditError(code, message + where) from None


def _placed(lay: Layout, node: str):  # noqa: ANN202 - a Placed
    placed = lay.steps.get(node)
    if placed is None:
        raise EditError("unknown_node", f"there is no step {node!r}")
    return placed


def _new_step(new: NewStep) -> Step:
    if (new.step is None) == (new.text is None):
        raise EditError("bad_step", "give the step as IR JSON (step) or as DSL text (text), one of them")
    if new.step is not None:
        try:
            return _STEP.validate_python(new.step)
        except ValidationError as exc:
            raise EditError("bad_step", f"not a step: {exc.errors()[0]['msg']}") from None
    body = "\n".join("  " + line for line in (new.text or "").split("\n"))
    try:
        journey = parse(f'journey "x"\n{body}\n', "<step>")
    except JourneyError as exc:
        raise EditError("bad_step", f"not a step: {exc.diagnostics[0].message}") from None
    if len(journey.steps) != 1:
        raise EditError("bad_step", "the text must hold exactly one step")
    return journey.steps[0]


def _holds_steps(step: Step) -> bool:
    return any(not isinstance(s, PassStep) for block in step.blocks() for s in block)


def _comment_of(lay: Layout, step: Step) -> str:
    """What follows the step's span on its line (an end-of-line comment)."""
    assert step.span is not None
    return lay.code(lay.head(step))[step.span.end_column - 1 :]


def _eol(lay: Layout) -> str:
    return "\r" if sum(line.endswith("\r") for line in lay.lines) * 2 > len(lay.lines) else ""


def _expand(lay: Layout, lines: list[str], block: list[Step]) -> str:
    """Turn an inline block (``else: exit``) into an indented one, in
    ``lines`` (the same length as ``lay.lines``: its step's line stays one
    entry); returns the block's indent."""
    step = block[0]
    assert step.span is not None
    line = lay.head(step)
    code = lay.code(line)
    indent = lay.indent(line) + INDENT
    head = code[: step.span.column - 1].rstrip()
    eol = "\r" if lay.lines[line].endswith("\r") else ""
    lines[line] = (
        f"{head}{_comment_of(lay, step)}{eol}\n{indent}{code[step.span.column - 1 : step.span.end_column - 1]}{eol}"
    )
    return indent


def _flat(lines: list[str]) -> list[str]:
    return "\n".join(lines).split("\n")


def _insert_at(lay: Layout, lines: list[str], position: Position, new: list[str]) -> list[str]:
    """``new`` (lines without indent) put at ``position``; returns flat lines."""
    eol = _eol(lay)
    if position.after is not None:
        placed = _placed(lay, position.after)
        block, step = placed.block, placed.step
        at = lay.end(step) + 1
    else:
        block = _block_of(lay, position.parent, position.block or "steps")
        if not block:
            raise EditError("unknown_block", "that block holds no steps; add the branch first")
        step = block[0]
        at = lay.first(step)
    if lay.inline(step):
        indent = _expand(lay, lines, block)
        at = lay.head(step) + (2 if position.after is not None else 1)
        lines = _flat(lines)
    else:
        indent = lay.indent(lay.head(step))
    lines[at:at] = [indent + t + eol if t.strip() else t for t in new]
    return _flat(lines)


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


def _delete(lay: Layout, node: str) -> list[str]:
    """The lines with the step (and the comments right above it) removed; the
    only step of a block becomes ``pass``."""
    placed = _placed(lay, node)
    step, lines = placed.step, list(lay.lines)
    assert step.span is not None
    head, eol = lay.head(step), ("\r" if lay.lines[lay.head(step)].endswith("\r") else "")
    if lay.inline(step):
        code = lay.code(head)
        lines[head] = code[: step.span.column - 1] + "pass" + _comment_of(lay, step) + eol
        return lines
    if len(placed.block) == 1 and placed.parent is not None:
        lines[lay.first(step) : lay.end(step) + 1] = [lay.indent(head) + "pass" + eol]
        return lines
    del lines[lay.first(step) : lay.end(step) + 1]
    return lines


def _replace(lay: Layout, edit: ReplaceStep) -> list[str]:
    placed = _placed(lay, edit.node)
    old, new = placed.step, _new_step(edit)
    lines = list(lay.lines)
    same_shape = type(old) is type(new) and _shape(old) == _shape(new)
    if not same_shape and _holds_steps(old) and not edit.force:
        raise EditError("not_empty", f"step {edit.node!r} holds steps; replacing it drops them (force to confirm)")
    if same_shape and old.blocks():
        heads = _head_spans(old)
        for span, text in zip(heads, head_texts(new), strict=True):
            code, eol = lay.code(span.line - 1), ("\r" if lines[span.line - 1].endswith("\r") else "")
            lines[span.line - 1] = code[: span.column - 1] + text + code[span.end_column - 1 :] + eol
        return lines
    if new.blocks() and lay.inline(old):
        raise EditError("inline_block", "a step with blocks cannot share its branch's line; insert it instead")
    head = lay.head(old)
    if not new.blocks() and not old.blocks():
        assert old.span is not None
        code, eol = lay.code(head), ("\r" if lines[head].endswith("\r") else "")
        lines[head] = code[: old.span.column - 1] + head_texts(new)[0] + code[old.span.end_column - 1 :] + eol
        return lines
    eol = _eol(lay)
    lines[head : lay.end(old) + 1] = [line + eol for line in step_lines(new, lay.indent(head))]
    return lines


def _shape(step: Step) -> tuple[object, ...]:
    """What must stay for a replacement to keep a compound step's blocks."""
    if isinstance(step, IfStep):
        return (len(step.branches), step.else_steps is not None)
    if isinstance(step, SplitStep):
        return tuple(bool(v.steps) for v in step.variants)
    if isinstance(step, WaitEventStep):
        return (bool(step.on_event), bool(step.on_timeout))
    if isinstance(step, CouponStep):
        return (step.out_of_stock is not None,)
    return ()


def _head_spans(step: Step) -> list[Any]:
    if isinstance(step, IfStep):
        return [b.span for b in step.branches]
    if isinstance(step, SplitStep):
        return [step.span, *(v.span for v in step.variants)]
    return [step.span]


def _insert(lay: Layout, edit: InsertStep) -> list[str]:
    return _insert_at(lay, list(lay.lines), edit.position, step_lines(_new_step(edit), ""))


def _delete_step(lay: Layout, edit: DeleteStep) -> list[str]:
    step = _placed(lay, edit.node).step
    if _holds_steps(step) and not edit.force:
        raise EditError("not_empty", f"step {edit.node!r} holds steps; deleting it deletes them (force to confirm)")
    return _delete(lay, edit.node)


def _move(lay: Layout, edit: MoveStep) -> list[str]:
    placed = _placed(lay, edit.node)
    step = placed.step
    inside = {s.id for block in step.blocks() for s in _walk(block)} | {step.id}
    if edit.position.after in inside or edit.position.parent in inside:
        raise EditError("bad_position", "a step cannot move into itself")
    if lay.inline(step):
        assert step.span is not None
        moved = [lay.code(lay.head(step))[step.span.column - 1 : step.span.end_column - 1]]
    else:
        base = lay.indent(lay.head(step))
        moved = []
        for i in range(lay.first(step), lay.end(step) + 1):
            code = lay.code(i)
            moved.append(code[len(base) :] if code.startswith(base) else code.strip())
    cut = "\n".join(_delete(lay, edit.node))
    after = layout(cut, _parse(cut, "would_not_parse", "the step cannot be cut out there"))
    return _insert_at(after, list(after.lines), edit.position, moved)


def _walk(block: list[Step]) -> list[Step]:
    out: list[Step] = []
    for s in block:
        out.append(s)
        for nested in s.blocks():
            out.extend(_walk(nested))
    return out


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
        if not edit.name or edit.percent is None:
            raise EditError("bad_branch", "a variant needs a name and a percent")
        if any(v.name == edit.name for v in step.variants):
            raise EditError("exists", f"there is a variant {edit.name!r} already")
        last = step.variants[-1]
        at = lay.end(last.steps[-1]) + 1 if last.steps else last.span.line  # type: ignore[union-attr]
        variant = SplitStep(variants=[Variant(name=edit.name, percent=edit.percent)])
        lines[at:at] = [lay.indent(last.span.line - 1) + head_texts(variant)[1] + eol]  # type: ignore[union-attr]
        return lines
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
            lines[lay.head(step)] = code[: step.span.end_column - 1] + ":" + code[step.span.end_column - 1 :] + eol
            at = lay.head(step) + 1
        elif edit.branch == "on_timeout":
            at = lay.end(step) + 1
        else:
            at = lay.block_head(step.on_timeout)
            while at > 0 and lay.code(at - 1).strip().startswith("#"):
                at -= 1
        lines[at:at] = new
        return lines
    raise EditError("bad_branch", f"a {step.kind} step cannot get a {edit.branch} branch")


def _cond(text: str | None) -> Any:
    if not text:
        raise EditError("bad_branch", "an else if needs a condition (cond, as DSL text)")
    step = _new_step(NewStep(text=f"if {text}: pass"))
    assert isinstance(step, IfStep)
    return step.branches[0].cond


def _delete_branch(lay: Layout, edit: DeleteBranch) -> list[str]:
    step = _placed(lay, edit.node).step
    blocks = step_blocks(step)
    if edit.block not in blocks and not (isinstance(step, SplitStep) and edit.block.startswith("variant:")):
        raise EditError("unknown_block", f"step {edit.node!r} has no block {edit.block!r}")
    block = blocks.get(edit.block, [])
    if any(not isinstance(s, PassStep) for s in block) and not edit.force:
        raise EditError("not_empty", f"{edit.block} holds steps; deleting it deletes them (force to confirm)")
    if len(blocks) == 1 or edit.block == "branch:0":
        raise EditError("last_branch", "that is the step's first or only branch; delete the step instead")
    lines = list(lay.lines)
    if isinstance(step, SplitStep):
        variant = next(v for v in step.variants if f"variant:{v.name}" == edit.block)
        start = variant.span.line - 1  # type: ignore[union-attr]
    else:
        start = lay.block_head(block)
    while start > 0 and lay.code(start - 1).strip().startswith("#"):
        start -= 1
    end = lay.end(block[-1]) if block else start
    del lines[start : end + 1]
    return lines


def _set_header(lay: Layout, edit: SetHeader) -> list[str]:
    data = lay.journey.model_dump(mode="json")
    data[edit.field] = edit.value if edit.value is not None or edit.field != "exits" else []
    try:
        changed = Journey.model_validate(data)
    except ValidationError as exc:
        raise EditError("bad_header", f"not a valid {edit.field}: {exc.errors()[0]['msg']}") from None
    if edit.field == "name" and not changed.name:
        raise EditError("bad_header", "a journey needs a name")
    eol = _eol(lay)
    new = [INDENT + t + eol for t in header_lines(changed).get(edit.field, [])]
    if edit.field == "name":
        new = [new[0].removeprefix(INDENT)]
    where = _header_lines(lay, edit.field)
    lines = list(lay.lines)
    if where:
        keep = [lay.code(where[0])[len(_code_part(lay.code(where[0]))) :]] if len(new) == 1 else [""]
        for index in reversed(where[1:]):
            del lines[index]
        if new:
            new[0] = new[0].removesuffix(eol) + keep[0] + eol
        lines[where[0] : where[0] + 1] = new
        return lines
    at = _header_end(lay)
    lines[at:at] = new
    return lines


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
}


def _header_lines(lay: Layout, field: str) -> list[int]:
    """The lines holding a header field (the top level is the only place a
    line can start with these words and parse)."""
    word = _WORDS[field]
    out = []
    for i in range(len(lay.lines)):
        code = lay.code(i).strip()
        if code == word or code.startswith(word + " ") or code.startswith(word + "\t"):
            out.append(i)
            if field == "name":
                break
    return out


def _code_part(code: str) -> str:
    from dsl.formatter import _trailing_comment

    comment = _trailing_comment(code)
    return code[: len(code) - len(comment)].rstrip() if comment else code


def _header_end(lay: Layout) -> int:
    """Where a new header line goes: after the last header line before the steps."""
    first = lay.first(lay.journey.steps[0]) if lay.journey.steps else len(lay.lines)
    at = _header_lines(lay, "name")[0] + 1
    for i in range(at, first):
        if lay.is_code(i):
            at = i + 1
    return at


_OPS: dict[type, Any] = {
    ReplaceStep: _replace,
    InsertStep: _insert,
    DeleteStep: _delete_step,
    MoveStep: _move,
    AddBranch: _add_branch,
    DeleteBranch: _delete_branch,
    SetHeader: _set_header,
}
