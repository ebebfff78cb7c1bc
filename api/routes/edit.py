"""``POST /v1/journeys/edit``: one structured diagram edit applied to the text,
and ``POST /v1/journeys/outline``: the steps of a text as the diagram's forms
need them.

Like ``/check`` they write nothing and only read names, so viewers may call
them; a bad edit is a 422 problem naming the edit's ``code``, never a 500.

The edit's answer is everything the editor redraws from — the new text, its
diagnostics, the diagram and the outline — so an edit on the diagram costs
one request and one parse of the new text (``dsl.edits`` already parsed it;
``check_text`` would parse it again), not an edit and then a check.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.deps import SettingsDep, viewer
from api.problems import Problem, error_item
from api.routes.check import CheckItem
from api.schemas import API_SOURCE_CHARS
from dsl import Registry, check
from dsl._edit_layout import step_blocks
from dsl._edit_text import header_lines
from dsl.edits import Edit, EditError, RestoreLines, apply_edit, parsed
from dsl.errors import Diagnostic
from dsl.formatter import format_cond
from dsl.ir import CouponStep, EventEntry, IfStep, Journey, PassStep, SplitStep, Step, WaitEventStep, _strip_spans
from dsl.render import to_svg
from engine.derived import profiles
from engine.schedules import past_one_off
from engine.settings import DerivedRules

log = logging.getLogger("journeys.api")
router = APIRouter(prefix="/v1/journeys", tags=["journeys"], dependencies=[Depends(viewer)])

Source = Annotated[str, StringConstraints(max_length=API_SOURCE_CHARS)]


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Source = Field(description="Current journey text")
    edit: Edit


class OutlineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Source = Field(description="Journey text")


class StepOutline(BaseModel):
    id: str
    kind: str
    line: int = Field(description="1-based line of the step's head")
    parent: str | None = Field(description="The step whose block holds this one; null at the top level")
    block: str = Field(description="That block's name (``steps`` at the top level)")
    blocks: list[str] = Field(description="This step's own blocks, by the names edits use")
    step: dict[str, Any] = Field(
        description="The step's own fields as IR JSON; its blocks stand in as [pass] (empty ones stay empty), "
        "so sent back changed as replace_step's step it keeps them"
    )
    conds: list[str] = Field(description="An if's branch conditions, a wait for event's where (empty: none), as text")


class OutlineOut(BaseModel):
    journey: dict[str, Any] = Field(description="The header as IR JSON (set_header's fields), without steps")
    header_lines: dict[str, list[str]] = Field(description="Each header field's line(s) as the language writes them")
    header_conds: dict[str, list[str]] = Field(
        description="The conditions of entry, goal and each exit rule as text (empty: none), for the forms"
    )
    steps: list[StepOutline] = Field(description="Every step in document order")


class EditOut(BaseModel):
    source: str = Field(description="The new text")
    inverse: RestoreLines = Field(description="The edit that undoes this one, byte for byte")
    ok: bool
    diagnostics: list[CheckItem]
    svg: str | None = Field(None, description="The diagram, as /check draws it")
    changed_lines: tuple[int, int] = Field(description="1-based first/last new line of the new text; 0, 0: none")
    outline: OutlineOut = Field(description="The new text's header and steps, as /outline gives them")


_PASS = [PassStep()]


def _head(step: Step) -> Step:
    """The step with every non-empty block cut down to one ``pass``: its own
    fields and its shape, without copying what it holds."""
    if isinstance(step, IfStep):
        return step.model_copy(
            update={
                "branches": [b.model_copy(update={"steps": _PASS}) for b in step.branches],
                "else_steps": _PASS if step.else_steps is not None else None,
            }
        )
    if isinstance(step, SplitStep):
        return step.model_copy(
            update={"variants": [v.model_copy(update={"steps": _PASS if v.steps else []}) for v in step.variants]}
        )
    if isinstance(step, WaitEventStep):
        return step.model_copy(
            update={"on_event": _PASS if step.on_event else [], "on_timeout": _PASS if step.on_timeout else []}
        )
    if isinstance(step, CouponStep) and step.out_of_stock is not None:
        return step.model_copy(update={"out_of_stock": _PASS})
    return step


def outline(journey: Journey) -> OutlineOut:
    """What the diagram's forms show: every step with its place, own fields
    and conditions as text, and the header as IR, lines and conditions."""
    out: list[StepOutline] = []

    def walk(steps: list[Step], parent: str | None, block: str) -> None:
        for step in steps:
            blocks = step_blocks(step)
            data = _strip_spans(_head(step).model_dump(mode="json"))
            assert isinstance(data, dict)
            out.append(
                StepOutline(
                    id=step.id,
                    kind=step.kind,
                    line=step.span.line if step.span is not None else 0,
                    parent=parent,
                    block=block,
                    blocks=list(blocks),
                    step=data,
                    conds=_step_conds(step),
                )
            )
            for name, nested in blocks.items():
                walk(nested, step.id, name)

    walk(journey.steps, None, "steps")
    header = _strip_spans(journey.model_dump(mode="json", exclude={"steps"}))
    assert isinstance(header, dict)
    entry_where = getattr(journey.entry, "where", None)
    conds = {
        "entry": [format_cond(entry_where, isinstance(journey.entry, EventEntry)) if entry_where else ""],
        "goal": [format_cond(journey.goal.where, True) if journey.goal and journey.goal.where else ""],
        "exits": [
            format_cond(rule.where, True) if rule.where else format_cond(rule.cond) if rule.cond else ""
            for rule in journey.exits
        ],
    }
    return OutlineOut(journey=header, header_lines=header_lines(journey), header_conds=conds, steps=out)


def _step_conds(step: Step) -> list[str]:
    if isinstance(step, IfStep):
        return [format_cond(b.cond) for b in step.branches]
    if isinstance(step, WaitEventStep):
        return [format_cond(step.where, True) if step.where is not None else ""]
    return []


def _item(d: Diagnostic) -> CheckItem:
    return CheckItem(code=d.code, severity=d.severity, message=d.message, line=d.line, column=d.column, hint=d.hint)


def _edit(body: EditIn, daily_limit: int | None, rules: DerivedRules) -> EditOut:
    """Apply, check and draw the parsed result (as ``check_text`` does after
    its own parse: the same diagnostics, E240 included, the same diagram)."""
    result = apply_edit(body.source, body.edit)
    journey = result.journey
    diagnostics = check(journey, result.source, "<editor>", Registry(profiles=profiles(rules)), daily_limit)
    past = past_one_off(journey)
    if past is not None:
        diagnostics.append(past)
    diagnostics.sort(key=lambda d: (d.line, d.column))
    svg = _diagram(result.source, journey)
    return EditOut(
        source=result.source,
        inverse=result.inverse,
        ok=not any(d.severity == "error" for d in diagnostics),
        diagnostics=[_item(d) for d in diagnostics],
        svg=svg,
        changed_lines=result.changed_lines,
        outline=outline(journey),
    )


_DIAGRAMS: OrderedDict[str, str | None] = OrderedDict()
_DIAGRAMS_SIZE = 8
_DIAGRAMS_LOCK = threading.Lock()


def _diagram(source: str, journey: Journey) -> str | None:
    """``to_svg``, remembered for the last few texts: undo and redo come back
    to a text drawn a moment ago, and drawing is most of an edit's time."""
    with _DIAGRAMS_LOCK:
        if source in _DIAGRAMS:
            _DIAGRAMS.move_to_end(source)
            return _DIAGRAMS[source]
    try:
        svg: str | None = to_svg(journey)
    except Exception:  # noqa: BLE001 - as /check: a journey that does not draw still answers
        log.debug("diagram of an edited journey failed", exc_info=True)
        svg = None
    with _DIAGRAMS_LOCK:
        _DIAGRAMS[source] = svg
        while len(_DIAGRAMS) > _DIAGRAMS_SIZE:
            _DIAGRAMS.popitem(last=False)
    return svg


def _refused(exc: EditError) -> Problem:
    return Problem(422, exc.message, title="Edit refused", errors=[error_item(exc.code, exc.message, field="edit")])


@router.post("/edit", response_model=EditOut, summary="Apply a structured (diagram) edit to journey text")
async def edit_journey(body: EditIn, settings: SettingsDep) -> Any:
    try:
        return await asyncio.to_thread(_edit, body, settings.cap_per_day, settings.derived)
    except EditError as exc:
        raise _refused(exc) from None


def _outline(source: str) -> OutlineOut:
    text = source.removeprefix("\ufeff")
    return outline(parsed(text, "source_has_errors", "the text has syntax errors; fix them first"))


@router.post("/outline", response_model=OutlineOut, summary="The steps of journey text, for the diagram's forms")
async def outline_journey(body: OutlineIn) -> Any:
    try:
        return await asyncio.to_thread(_outline, body.source)
    except EditError as exc:
        raise _refused(exc) from None
