"""A template as one user would receive it: the same context a send builds
(profile, tags, masked identifiers), plus the event and coupon the caller
supplies. The template's own rendering and limits are ``engine.templates``'."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import identity
from engine.store import Store
from engine.store.models import User
from engine.tags import tags_of
from engine.templates import Rendered, TemplateInfo, build_context, get_template, render


@dataclass(frozen=True)
class Preview:
    channel: str | None  # the one rendered: the one asked for, else the template's first
    rendered: Rendered


def template_named(store: Store, name: str) -> TemplateInfo | None:
    with store.read() as s:
        return get_template(s, name)


def preview(
    store: Store,
    template: TemplateInfo,
    user_id: str,
    *,
    channel: str | None = None,
    event: dict[str, Any] | None = None,
    coupon: dict[str, Any] | None = None,
) -> Preview:
    """Render ``template`` for the user (``KeyError`` for an unknown user;
    ``engine.templates.TemplateRenderError`` when it does not render)."""
    channel = channel or next(iter(template.channel_bodies), None)
    with store.read() as s:
        user = s.get(User, user_id)
        if user is None:
            raise KeyError(user_id)
        context = build_context(
            user_id=user_id,
            attributes=dict(user.attributes or {}),
            timezone=user.timezone,
            stage=user.stage,
            rfm=user.rfm,
            identifiers=identity.identities_of(s, user_id),
            tags=tags_of(s, user_id),
            event=event,
            coupon=coupon,
            channel=channel,
        )
    return Preview(channel, render(template, channel, context))
