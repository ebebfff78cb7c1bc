"""Message templates: create, update, list, get, and preview for a user.

Bodies are Jinja (sandboxed) and syntax-checked when saved; a preview renders
with the same context a send would have (profile, tags, masked identifiers),
plus the event and coupon the caller supplies.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Query, Response

from api.deps import Operator, StoreDep, viewer
from api.lookups import user_or_404
from api.problems import Problem, not_found
from api.schemas import NameStr, PreviewIn, PreviewOut, TemplateBody, TemplateIn, TemplateOut, UserIdStr
from engine.previews import preview as render_preview
from engine.previews import template_named
from engine.store import Store
from engine.templates import TemplateInfo, TemplateRenderError, list_templates, upsert_template

router = APIRouter(prefix="/v1/templates", tags=["templates"], dependencies=[Depends(viewer)])


def _save(store: Store, name: str, body: TemplateBody) -> TemplateInfo:
    try:
        return upsert_template(
            store,
            name,
            body.body,
            channel_bodies=dict(body.channel_bodies),
            subject=body.subject,
            transactional=body.transactional,
        )
    except TemplateRenderError as exc:
        raise Problem(422, str(exc), kind="template-invalid") from None


@router.get("", response_model=list[TemplateOut], summary="List templates")
async def list_all(store: StoreDep) -> list[TemplateOut]:
    return [TemplateOut.model_validate(t) for t in await asyncio.to_thread(list_templates, store)]


@router.post("", response_model=TemplateOut, status_code=201, summary="Create a template (409 if the name exists)")
async def create(body: TemplateIn, store: StoreDep, _: Operator) -> TemplateOut:
    if await asyncio.to_thread(template_named, store, body.name) is not None:
        raise Problem(409, f"template {body.name!r} exists; PUT /v1/templates/{{name}} updates it")
    return TemplateOut.model_validate(await asyncio.to_thread(_save, store, body.name, body))


@router.get("/{name}", response_model=TemplateOut, summary="A template")
async def get_one(name: NameStr, store: StoreDep) -> TemplateOut:
    found = await asyncio.to_thread(template_named, store, name)
    if found is None:
        raise not_found("template", name)
    return TemplateOut.model_validate(found)


@router.put(
    "/{name}",
    response_model=TemplateOut,
    summary="Create or update a template (version goes up when something changed)",
    responses={201: {"model": TemplateOut, "description": "Created"}},
)
async def put(name: NameStr, body: TemplateBody, response: Response, store: StoreDep, _: Operator) -> TemplateOut:
    existed = await asyncio.to_thread(template_named, store, name) is not None
    saved = await asyncio.to_thread(_save, store, name, body)
    response.status_code = 200 if existed else 201
    return TemplateOut.model_validate(saved)


def _preview(store: Store, template: TemplateInfo, uid: str, body: PreviewIn) -> PreviewOut:
    try:
        shown = render_preview(store, template, uid, channel=body.channel, event=body.event, coupon=body.coupon)
    except TemplateRenderError as exc:
        raise Problem(422, str(exc), kind="template-render-failed") from None
    return PreviewOut(
        template=template.name,
        version=template.version,
        user_id=uid,
        channel=shown.channel,
        subject=shown.rendered.subject,
        body=shown.rendered.body,
    )


@router.post("/{name}/preview", response_model=PreviewOut, summary="Render the template for a user")
async def preview(
    name: NameStr,
    user_id: Annotated[UserIdStr, Query()],
    store: StoreDep,
    body: Annotated[PreviewIn | None, Body()] = None,
) -> PreviewOut:
    template = await asyncio.to_thread(template_named, store, name)
    if template is None:
        raise not_found("template", name)
    uid = await user_or_404(store, user_id)
    return await asyncio.to_thread(_preview, store, template, uid, body or PreviewIn())
