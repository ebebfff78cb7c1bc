"""``POST /v1/journeys/edit``: one structured diagram edit applied to the text.

Like ``/check`` it writes nothing and only reads names, so viewers may call
it; a bad edit is a 422 problem naming the edit's ``code``, never a 500.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.deps import SettingsDep, StoreDep, viewer
from api.problems import Problem
from api.routes.check import CheckItem, check_text
from api.schemas import API_SOURCE_CHARS
from dsl.edits import Edit, EditError, RestoreLines, apply_edit
from engine.store import Store

router = APIRouter(prefix="/v1/journeys", tags=["journeys"], dependencies=[Depends(viewer)])


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source: Annotated[str, StringConstraints(max_length=API_SOURCE_CHARS)] = Field(description="Current journey text")
    edit: Edit


class EditOut(BaseModel):
    source: str = Field(description="The new text")
    inverse: RestoreLines = Field(description="The edit that undoes this one, byte for byte")
    ok: bool
    diagnostics: list[CheckItem]
    svg: str | None = Field(None, description="The diagram, as /check draws it")
    changed_lines: tuple[int, int] = Field(description="1-based first/last changed line of the new text; 0, 0: none")


def _edit(body: EditIn, store: Store, daily_limit: int | None) -> EditOut:
    result = apply_edit(body.source, body.edit)
    checked = check_text(result.source, store, daily_limit, False)
    return EditOut(
        source=result.source,
        inverse=result.inverse,
        ok=checked.ok,
        diagnostics=checked.errors,
        svg=checked.svg,
        changed_lines=result.changed_lines,
    )


@router.post("/edit", response_model=EditOut, summary="Apply a structured (diagram) edit to journey text")
async def edit_journey(body: EditIn, store: StoreDep, settings: SettingsDep) -> Any:
    try:
        return await asyncio.to_thread(_edit, body, store, settings.cap_per_day)
    except EditError as exc:
        raise Problem(
            422, exc.message, title="Edit refused", errors=[{"code": exc.code, "message": exc.message}]
        ) from None
