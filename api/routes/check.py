"""``POST /v1/journeys/check``: compile journey text without deploying it.

The console's editor calls this on every typing pause, so it must be cheap,
never write anything, and answer 200 whatever the text contains: a journey
with mistakes is the normal case while someone types, not a client error.
The answer carries every diagnostic with its line and column (the editor
puts a marker in the gutter there) and, when the text parses, the diagram
as SVG — even with semantic errors, so the picture keeps up with the typing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.deps import SettingsDep, StoreDep, viewer
from api.schemas import API_SOURCE_CHARS
from dsl import JourneyError, Registry, check, parse
from dsl.errors import Diagnostic
from dsl.ids import slug
from dsl.ir import CouponStep, Journey, SendStep, iter_steps
from dsl.render import to_svg
from engine import catalog, queries
from engine.derived import profiles
from engine.schedules import past_one_off
from engine.settings import DerivedRules
from engine.store import Store
from engine.templates import list_templates

log = logging.getLogger("journeys.api")
router = APIRouter(prefix="/v1/journeys", tags=["journeys"], dependencies=[Depends(viewer)])


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Annotated[str, StringConstraints(max_length=API_SOURCE_CHARS)] = Field(description="Journey text to check")
    check_references: bool = Field(
        False, description="Also report templates and coupon pools that do not exist in the store"
    )


class CheckItem(BaseModel):
    code: str
    severity: str
    message: str
    line: int
    column: int
    hint: str | None = None


class CheckOut(BaseModel):
    ok: bool = Field(description="True when there is no error (warnings allowed): the text can be deployed")
    errors: list[CheckItem] = Field(description="Errors and warnings, in source order")
    svg: str | None = Field(None, description="The diagram, when the text parses; null otherwise")
    name: str | None = Field(None, description="The journey's name, when the text parses")
    suggested_id: str | None = Field(None, description="The id a deploy without an explicit id would use")
    templates: list[str] = Field(default_factory=list, description="Message templates the journey sends")
    pools: list[str] = Field(default_factory=list, description="Coupon pools the journey issues from")


def _item(d: Diagnostic) -> CheckItem:
    return CheckItem(code=d.code, severity=d.severity, message=d.message, line=d.line, column=d.column, hint=d.hint)


def _references(journey: Journey) -> tuple[list[str], list[str]]:
    templates: list[str] = []
    pools: list[str] = []
    for step in iter_steps(journey.steps):
        if isinstance(step, SendStep):
            templates.append(step.template)
        elif isinstance(step, CouponStep):
            pools.append(step.pool)
    return list(dict.fromkeys(templates)), list(dict.fromkeys(pools))


def check_text(
    source: str,
    store: Store | None,
    daily_limit: int | None,
    check_references: bool,
    rules: DerivedRules | None = None,
) -> CheckOut:
    """Parse, check and draw; pure apart from reading template/pool names."""
    if not source.strip():
        empty = Diagnostic("E000", "the journey is empty", 1, 1, hint='start with: journey "name"')
        return CheckOut(ok=False, errors=[_item(empty)])
    try:
        journey = parse(source, "<editor>")
    except JourneyError as exc:
        return CheckOut(ok=False, errors=[_item(d) for d in exc.diagnostics])
    except RecursionError:
        deep = Diagnostic("E000", "the journey is nested too deeply to compile", 1, 1)
        return CheckOut(ok=False, errors=[_item(deep)])
    registry = Registry(profiles=profiles(rules or DerivedRules()))
    if check_references and store is not None:
        registry.templates = {t.name for t in list_templates(store)}
        registry.pools = {p.name for p in queries.list_pools(store)}
        registry.priorities = catalog.priorities(store)
    diagnostics = check(journey, source, "<editor>", registry, daily_limit)
    past = past_one_off(journey)  # what a deploy of this text would refuse
    if past is not None:
        diagnostics.append(past)
    diagnostics = sorted(diagnostics, key=lambda d: (d.line, d.column))
    try:
        svg = to_svg(journey)
    except Exception:  # noqa: BLE001 - a half-written journey may not draw; the errors still answer
        log.debug("diagram of a checked journey failed", exc_info=True)
        svg = None
    templates, pools = _references(journey)
    return CheckOut(
        ok=not any(d.severity == "error" for d in diagnostics),
        errors=[_item(d) for d in diagnostics],
        svg=svg,
        name=journey.name,
        suggested_id=slug(journey.name) if journey.name else None,
        templates=templates,
        pools=pools,
    )


@router.post(
    "/check",
    response_model=CheckOut,
    summary="Check journey text without deploying it (errors with line/column/hint, and the diagram)",
)
async def check_journey(body: CheckIn, store: StoreDep, settings: SettingsDep) -> CheckOut:
    return await asyncio.to_thread(
        check_text, body.source, store, settings.cap_per_day, body.check_references, settings.derived
    )
