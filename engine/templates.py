"""Message templates: storage and sandboxed rendering.

Templates are written by operators, so they render in jinja2's
``SandboxedEnvironment`` (no attribute access to internals) with
``StrictUndefined``: a typo or a missing value (``{{ coupon.code }}`` in a send
that issued no coupon) raises ``TemplateRenderError`` with a readable reason,
which the send records as a failed delivery instead of sending "您的券码是 ".

Context: ``user`` (profile attributes plus ``id``, ``timezone``, ``stage``,
``rfm`` and ``identifiers`` with phones/emails masked), ``tags``, ``event`` (the
trigger or last awaited event's properties), ``coupon`` (the last issued), and
``channel``.

Links can be tracked (``engine.tracked_links``): ``{{ track(url,
tags=[...]) }}`` for one, ``{% filter track_links %}`` for every link of a
block. A send passes its ``LinkTracker`` to ``render``, which rewrites them
to signed ``/r/<token>`` URLs; a preview passes none and shows them as
written.

Every render is bounded (``engine.template_limits``): output
size, ``**``/``*``/``%`` and the string methods and filters that grow text,
``range``, and time. Over a limit is a ``TemplateLimitError``, a
``TemplateRenderError`` like any other: a failed delivery in a send, a 422 in
a preview, and refused when saved if an empty context already shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateError, UndefinedError
from jinja2 import Template as JinjaTemplate
from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from engine import tracked_links
from engine.store import Store
from engine.store.models import Template
from engine.store.types import utcnow
from engine.template_limits import (
    LimitedEnvironment,
    TemplateLimitError,
    TemplateRenderError,
    render_limited,
)


@dataclass(frozen=True)
class Rendered:
    subject: str | None
    body: str


@dataclass(frozen=True)
class TemplateInfo:
    name: str
    body: str
    channel_bodies: dict[str, str]
    subject: str | None
    transactional: bool
    version: int


_env = LimitedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
# The save-time probe: the same limits, but a missing value is an empty one, so
# only what the template does on its own (``{{ 'a'*10**9 }}``) can fail it.
_probe_env = LimitedEnvironment(undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=False)
for _environment in (_env, _probe_env):
    tracked_links.install(_environment)


@lru_cache(maxsize=1024)
def _compile(source: str) -> JinjaTemplate:
    return _env.from_string(source)


def render(
    template: TemplateInfo,
    channel: str | None,
    context: Mapping[str, Any],
    links: tracked_links.LinkTracker | None = None,
) -> Rendered:
    """Render the channel's body (or the generic one) and the subject;
    with ``links`` (a send's), tracked links become signed redirect URLs,
    collected in ``links.links`` for the send to save."""
    if links is not None:
        context = {**context, tracked_links.LINKS_KEY: links}
    source = template.channel_bodies.get(channel or "", template.body) if template.channel_bodies else template.body
    try:
        body = render_limited(_compile(source), context)
        subject = render_limited(_compile(template.subject), context) if template.subject else None
    except TemplateLimitError as exc:
        raise TemplateLimitError(f"template {template.name!r} v{template.version}: {exc}") from exc
    except UndefinedError as exc:
        raise TemplateRenderError(f"template {template.name!r} v{template.version}: missing variable: {exc}") from exc
    except TemplateError as exc:
        raise TemplateRenderError(f"template {template.name!r} v{template.version}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - operator-written code may raise anything (e.g. 1/0)
        raise TemplateRenderError(
            f"template {template.name!r} v{template.version}: {type(exc).__name__}: {exc}"
        ) from exc
    if not body.strip():
        raise TemplateRenderError(f"template {template.name!r} v{template.version}: rendered an empty body")
    return Rendered(subject=subject, body=body)


def validate(source: str) -> str | None:
    """The error text, or None: the syntax, then a render with an empty
    context under the send's limits, so a template that is over a limit
    whatever the data (``{{ 'a'*10**9 }}``, ``{{ 9**9**9 }}``) is refused when
    saved. Other render errors depend on the data and are left to the send."""
    try:
        compiled = _probe_env.from_string(source)
    except TemplateError as exc:
        return str(exc)
    try:
        render_limited(compiled, {})
    except TemplateLimitError as exc:
        return str(exc)
    except RecursionError:  # whatever the data, it would fail every send
        return "a macro calls itself without end"
    except Exception:  # noqa: BLE001 - 1/0 or a bad filter argument may be fine with real data
        return None
    return None


def mask(kind: str, value: str) -> str:
    """Identifiers shown to templates are masked: a message may quote "尾号 1234"
    but should never leak a full phone or openid into a third-party channel."""
    if kind == "phone" and len(value) >= 7:
        return value[:3] + "*" * (len(value) - 7) + value[-4:]
    if kind == "email" and "@" in value:
        local, domain = value.split("@", 1)
        return (local[:1] + "***@" + domain) if local else value
    return value[:2] + "***" + value[-2:] if len(value) > 6 else "***"


def build_context(
    *,
    user_id: str,
    attributes: Mapping[str, Any],
    timezone: str | None,
    stage: str | None,
    rfm: str | None,
    identifiers: Mapping[str, list[str]],
    tags: list[str],
    event: Mapping[str, Any] | None,
    coupon: Mapping[str, Any] | None,
    channel: str | None,
) -> dict[str, Any]:
    """Absent ``event``/``coupon`` are left out on purpose so that using them
    is a missing-variable error, not an empty string."""
    user: dict[str, Any] = dict(attributes)
    user.update(
        id=user_id,
        timezone=timezone,
        stage=stage,
        rfm=rfm,
        identifiers={k: mask(k, v[-1]) for k, v in identifiers.items() if v},
    )
    context: dict[str, Any] = {"user": user, "tags": list(tags), "channel": channel}
    if event is not None:
        context["event"] = dict(event)
    if coupon is not None:
        context["coupon"] = dict(coupon)
    return context


# ---------------------------------------------------------------- storage


def _info(row: Template) -> TemplateInfo:
    return TemplateInfo(
        name=row.name,
        body=row.body,
        channel_bodies=dict(row.channel_bodies or {}),
        subject=row.subject,
        transactional=row.transactional,
        version=row.version,
    )


_TEMPLATES = Template.__table__
_BY_NAME = select(
    _TEMPLATES.c.name,
    _TEMPLATES.c.body,
    _TEMPLATES.c.channel_bodies,
    _TEMPLATES.c.subject,
    _TEMPLATES.c.transactional,
    _TEMPLATES.c.version,
).where(_TEMPLATES.c.name == bindparam("name"))


def get_template(session: Session, name: str) -> TemplateInfo | None:
    """Every send reads its template: one Core statement, built once."""
    row = session.execute(_BY_NAME, {"name": name}).first()
    if row is None:
        return None
    return TemplateInfo(row.name, row.body, dict(row.channel_bodies or {}), row.subject, row.transactional, row.version)


def transactional_names(session: Session, names: list[str]) -> list[str]:
    if not names:
        return []
    rows = session.scalars(select(Template.name).where(Template.name.in_(names), Template.transactional.is_(True)))
    found = set(rows)
    return [n for n in names if n in found]


def upsert_template(
    store: Store,
    name: str,
    body: str,
    *,
    channel_bodies: Mapping[str, str] | None = None,
    subject: str | None = None,
    transactional: bool = False,
) -> TemplateInfo:
    """Create or update a template; the version goes up only when something
    changed. Bodies are syntax-checked first, so a broken template is refused
    when saved rather than at send time."""
    for source in [body, subject or "", *(channel_bodies or {}).values()]:
        error = validate(source)
        if error:
            raise TemplateRenderError(f"template {name!r}: {error}")

    def work(s: Session) -> TemplateInfo:
        row = s.scalars(select(Template).where(Template.name == name)).first()
        new_bodies = dict(channel_bodies or {})
        if row is None:
            row = Template(
                name=name,
                body=body,
                channel_bodies=new_bodies,
                subject=subject,
                transactional=transactional,
                version=1,
            )
            s.add(row)
        elif (row.body, dict(row.channel_bodies or {}), row.subject, row.transactional) != (
            body,
            new_bodies,
            subject,
            transactional,
        ):
            row.body, row.channel_bodies, row.subject, row.transactional = body, new_bodies, subject, transactional
            row.version += 1
            row.updated_at = utcnow()
        s.flush()
        return _info(row)

    return store.transact(work)


def list_templates(store: Store) -> list[TemplateInfo]:
    with store.read() as s:
        return [_info(r) for r in s.scalars(select(Template).order_by(Template.name))]
