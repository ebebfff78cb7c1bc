"""The journey IR: what a parsed, checked journey *is*, independent of its text.

The IR is the contract between the language (``dsl/``), the interpreter
(``workflows/``) and the service (``api/``). A Temporal run receives the IR of the
version the user entered as its input, so these models must stay JSON
round-trippable and backwards compatible: add optional fields, never rename.

Every step carries a stable ``id`` (see ``dsl.ids``) and the ``span`` of source
text it came from, so errors, diagrams and live counts all point at the same node.

Each step class also carries the static facts of its kind (``waits``,
``outcomes``, ``blocks()``, ``conds()``) that the other layers read instead of
lists of kinds of their own. The module is past 450 lines because it is the
whole contract in one place: every model, and the unions that must be rebuilt
together.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

CHANNELS: tuple[str, ...] = (
    "wecom",
    "wecom_group",
    "official_account",
    "miniprogram",
    "push",
    "sms",
    "email",
    "webhook",
)
Channel = Literal[
    "wecom",
    "wecom_group",
    "official_account",
    "miniprogram",
    "push",
    "sms",
    "email",
    "webhook",
]
STAGES: tuple[str, ...] = ("new", "active", "silent", "churned", "paying")
RFM_LAYERS: tuple[str, ...] = ("high", "mid", "low")  # engine.derived; a user who never paid has none
WEEKDAYS: tuple[str, ...] = (
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
)
CompareOp = Literal["==", "!=", "<", "<=", ">", ">=", "in", "not in"]
Scalar = str | int | float | bool
Value = Scalar | list[Scalar]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False)


class Span(_Model):
    """Where a node came from: 1-based line and column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int


# ---------------------------------------------------------------- conditions


class _Cond(_Model):
    def operands_of(self) -> list[Cond]:
        """The conditions this one is made of (``not``, ``and``, ``or``); a
        leaf has none. ``iter_conds`` walks a tree by this."""
        return []


class TagCond(_Cond):
    """``tag visited``: the user carries the tag."""

    kind: Literal["tag"] = "tag"
    tag: str


class NotCond(_Cond):
    kind: Literal["not"] = "not"
    operand: Cond

    def operands_of(self) -> list[Cond]:
        return [self.operand]


class AndCond(_Cond):
    kind: Literal["and"] = "and"
    operands: list[Cond]

    def operands_of(self) -> list[Cond]:
        return self.operands


class OrCond(_Cond):
    kind: Literal["or"] = "or"
    operands: list[Cond]

    def operands_of(self) -> list[Cond]:
        return self.operands


class CompareCond(_Cond):
    """``user.city == "上海"`` or ``event.amount >= 100``.

    ``subject`` says whose field: the user's attributes, or the properties of the
    event that triggered the entry / was last awaited (in ``where`` clauses a bare
    name means the event being matched).
    """

    kind: Literal["compare"] = "compare"
    subject: Literal["user", "event"]
    field: str
    op: CompareOp
    value: Value


class StageCond(_Cond):
    """``stage is silent`` / ``stage in [silent, churned]`` (lifecycle stage)."""

    kind: Literal["stage"] = "stage"
    stages: list[str]


class RfmCond(_Cond):
    """``rfm is high`` / ``rfm in [high, mid]`` (RFM layer from derived tags)."""

    kind: Literal["rfm"] = "rfm"
    layers: list[str]


class EventCountCond(_Cond):
    """``count order_paid within 30d >= 2``: how often the user did something."""

    kind: Literal["event_count"] = "event_count"
    event: str
    within_seconds: int | None = None
    op: CompareOp
    value: int


class ReachableCond(_Cond):
    """``reachable push``: the user can be messaged on that channel now."""

    kind: Literal["reachable"] = "reachable"
    channel: Channel


Cond = Annotated[
    TagCond | NotCond | AndCond | OrCond | CompareCond | StageCond | RfmCond | EventCountCond | ReachableCond,
    Field(discriminator="kind"),
]

# ---------------------------------------------------------------- header


class EventEntry(_Model):
    kind: Literal["event"] = "event"
    event: str
    where: Cond | None = None
    span: Span | None = None


class Schedule(_Model):
    """When a tag-audience entry runs: ``every day at 10:00``,
    ``every monday at 09:30`` or ``once at 2026-12-01 10:00`` (journey timezone)."""

    every: Literal["day", "week", "once"]
    time: str  # "HH:MM"
    weekday: int | None = None  # 0 = monday, with every="week"
    date: str | None = None  # "YYYY-MM-DD", with every="once"


class AudienceEntry(_Model):
    kind: Literal["audience"] = "audience"
    where: Cond
    schedule: Schedule
    span: Span | None = None


class ApiEntry(_Model):
    kind: Literal["api"] = "api"
    span: Span | None = None


Entry = Annotated[EventEntry | AudienceEntry | ApiEntry, Field(discriminator="kind")]


class Reentry(_Model):
    """``reentry once`` | ``reentry always`` | ``reentry after 30d``."""

    mode: Literal["once", "always", "after"] = "once"
    cooldown_seconds: int | None = None
    span: Span | None = None


class Goal(_Model):
    """``goal event order_paid within 14d [where ...] [then exit]``."""

    event: str
    within_seconds: int | None = None
    where: Cond | None = None
    exit_on_goal: bool = False
    span: Span | None = None


class ExitRule(_Model):
    """``exit when event unsubscribed`` or ``exit when tag blacklisted``: checked at
    every point of the run."""

    event: str | None = None
    where: Cond | None = None  # event property condition, with event
    cond: Cond | None = None  # user condition (tags, attributes), without event
    span: Span | None = None


class QuietHours(_Model):
    """``quiet hours 22:00-08:00`` in the user's (else the journey's) timezone;
    may cross midnight."""

    start: str
    end: str
    span: Span | None = None


class MessageLimit(_Model):
    """``limit 3 messages per 1d``: the most messages this journey sends one user
    in the window. ``per 1d`` slides (the last 24 hours); ``per day`` and
    ``per week`` are calendar windows in the user's (else the journey's)
    timezone — since local midnight, since Monday 00:00 — which is what an
    operator who says "twice a day" usually means."""

    count: int
    window_seconds: int
    calendar: Literal["day", "week"] | None = None
    span: Span | None = None


PRIORITY_LEVELS: dict[str, int] = {"high": 2, "normal": 5, "low": 8}
DEFAULT_PRIORITY = PRIORITY_LEVELS["normal"]


class CapPolicy(_Model):
    """``when capped defer up to 1d`` / ``when capped skip``: what a send does
    when a frequency cap (the global caps or the journey's ``limit``) would
    stop it. ``skip`` drops the message (the default); ``defer`` holds the run
    at the send until the first moment the caps allow it, for at most
    ``max_delay_seconds``, and skips it after that. In the header it applies
    to every send; on a send line, to that send."""

    mode: Literal["skip", "defer"]
    max_delay_seconds: int | None = None
    span: Span | None = None


# ---------------------------------------------------------------- steps


class _Step(_Model):
    id: str = ""
    span: Span | None = None

    # Static facts of the kind, read by every layer instead of a list of kinds
    # of its own. ``waits``: a run can rest at this step for a while (a timer,
    # an awaited event, a send held by quiet hours), so "waiting now" counts it.
    waits: ClassVar[bool] = False
    # ``outcomes``: the graph's edge keys out of this step, which are also what
    # the interpreter's handler answers (``dsl.graph``); ``branch:*`` and
    # ``variant:*`` stand for one edge per arm (``branch:0``, ``variant:A``).
    outcomes: ClassVar[tuple[str, ...]] = ("next",)

    def blocks(self) -> list[list[Step]]:
        """The nested blocks of this step, in document order; a leaf has none.
        Everything that walks children (``iter_steps``, ``child_blocks``, ids,
        the graph, the checker) derives from this."""
        return []

    def conds(self) -> list[tuple[Cond, Span | None]]:
        """The conditions this step tests, each with the span of its line."""
        return []


class SendStep(_Step):
    """``send sms "tpl"`` or ``send best of wecom, push, sms "tpl"`` (first
    reachable channel in the given order)."""

    waits: ClassVar[bool] = True
    kind: Literal["send"] = "send"
    channels: list[Channel]
    best_of: bool = False
    template: str
    when_capped: CapPolicy | None = None  # overrides the journey's policy


class CouponStep(_Step):
    """``coupon "pool"`` with an optional ``on out_of_stock:`` block."""

    outcomes: ClassVar[tuple[str, ...]] = ("next", "out_of_stock")
    kind: Literal["coupon"] = "coupon"
    pool: str
    out_of_stock: list[Step] | None = None

    def blocks(self) -> list[list[Step]]:
        return [self.out_of_stock] if self.out_of_stock is not None else []


class TagPart(_Model):
    """One piece of a computed tag: text, or a field of the event or user."""

    text: str | None = None
    subject: Literal["event", "user"] | None = None
    field: str | None = None


class TagStep(_Step):
    """``tag add vip, "src_" + event.placement``: constant names in
    ``tags``; the ones made from fields in ``computed`` (each a list of
    parts, joined then made safe by ``dsl.tag_names.make_tag`` at run time)."""

    kind: Literal["tag"] = "tag"
    action: Literal["add", "remove"]
    tags: list[str]
    computed: list[list[TagPart]] | None = None


class WaitStep(_Step):
    """``wait 1d``."""

    waits: ClassVar[bool] = True
    kind: Literal["wait"] = "wait"
    seconds: int


class WaitUntilStep(_Step):
    """``wait until 10:00`` / ``wait until monday 10:00``: the next such local time
    in the user's timezone (never now)."""

    waits: ClassVar[bool] = True
    kind: Literal["wait_until"] = "wait_until"
    time: str  # "HH:MM"
    weekday: int | None = None  # 0 = monday


class WaitDateStep(_Step):
    """``wait until user.term_start - 7d [at 10:00]``: a date held in a user
    attribute, shifted by an offset; passes at once if it is already past."""

    waits: ClassVar[bool] = True
    kind: Literal["wait_date"] = "wait_date"
    attribute: str
    offset_seconds: int = 0
    time: str | None = None


class WaitEventTimeStep(_Step):
    """``wait until event.appointment_at - 2h [at 10:00]``: a date or date-time
    carried by the event that woke the run (the entry trigger, or the event the
    last ``wait for event`` received), shifted by an offset. A date-time with a
    UTC offset is that instant; one without, or a bare date, is read in the
    user's timezone (a bare date at ``at``'s time, else 00:00). Passes at once
    when the moment is past, or the field is missing or not a date."""

    waits: ClassVar[bool] = True
    kind: Literal["wait_event_time"] = "wait_event_time"
    field: str
    offset_seconds: int = 0
    time: str | None = None


class WaitEventStep(_Step):
    """``wait for event order_paid [where ...] [up to 3d]:`` with ``on event`` and
    ``on timeout`` branches; the event's properties are usable afterwards as
    ``event.x``."""

    waits: ClassVar[bool] = True
    kind: Literal["wait_event"] = "wait_event"
    event: str
    where: Cond | None = None
    timeout_seconds: int | None = None
    outcomes: ClassVar[tuple[str, ...]] = ("event", "timeout")
    on_event: list[Step] = Field(default_factory=list)
    on_timeout: list[Step] = Field(default_factory=list)

    def blocks(self) -> list[list[Step]]:
        return [self.on_event, self.on_timeout]

    def conds(self) -> list[tuple[Cond, Span | None]]:
        return [(self.where, self.span)] if self.where is not None else []


class Branch(_Model):
    cond: Cond
    steps: list[Step]
    span: Span | None = None


class IfStep(_Step):
    """``if COND:`` with ``else if`` / ``elif`` branches and an ``else``."""

    outcomes: ClassVar[tuple[str, ...]] = ("branch:*", "else")
    kind: Literal["if"] = "if"
    branches: list[Branch]
    else_steps: list[Step] | None = None

    def blocks(self) -> list[list[Step]]:
        blocks = [b.steps for b in self.branches]
        if self.else_steps is not None:
            blocks.append(self.else_steps)
        return blocks

    def conds(self) -> list[tuple[Cond, Span | None]]:
        return [(b.cond, b.span or self.span) for b in self.branches]


class Variant(_Model):
    name: str
    percent: float
    steps: list[Step] = Field(default_factory=list)
    holdout: bool = False
    span: Span | None = None


class SplitTest(_Model):
    """``split test 10% for 6h by goal:`` (or ``by event clicked``): the split
    is first a test on a sample of the runs that reach it; the others wait
    at the split until the window has passed since the first run reached it,
    when the winner is decided once for the journey version (the variant
    whose runs did best on the metric, if significantly; else ``otherwise``,
    by default the first variant) and they — and every later run — take it."""

    sample_percent: float
    window_seconds: int
    metric: Literal["goal", "event"]
    event: str | None = None  # with ``by event``
    otherwise: str | None = None  # the variant when none wins; None: the first
    span: Span | None = None


class SplitStep(_Step):
    """``split:`` into named variants by percentage; a ``holdout`` variant gets no
    messages from the journey (sends are recorded as suppressed) so its
    conversions measure the journey's effect."""

    outcomes: ClassVar[tuple[str, ...]] = ("variant:*",)
    kind: Literal["split"] = "split"
    variants: list[Variant]
    test: SplitTest | None = None

    def fallback(self) -> str:
        """The variant a test split takes when no variant wins."""
        if self.test is not None and self.test.otherwise:
            return self.test.otherwise
        return self.variants[0].name if self.variants else ""

    def blocks(self) -> list[list[Step]]:
        return [v.steps for v in self.variants]


class LabelStep(_Step):
    """``label reminder``: a place ``goto`` can jump to."""

    kind: Literal["label"] = "label"
    name: str


class GotoStep(_Step):
    kind: Literal["goto"] = "goto"
    label: str


class ExitStep(_Step):
    kind: Literal["exit"] = "exit"


class PassStep(_Step):
    kind: Literal["pass"] = "pass"


Step = Annotated[
    SendStep
    | CouponStep
    | TagStep
    | WaitStep
    | WaitUntilStep
    | WaitDateStep
    | WaitEventTimeStep
    | WaitEventStep
    | IfStep
    | SplitStep
    | LabelStep
    | GotoStep
    | ExitStep
    | PassStep,
    Field(discriminator="kind"),
]


# every step kind, in the union's order: registries (ids, graph, formatter,
# renderers, checker, interpreter, stats) are checked against this tuple
STEP_KINDS: tuple[type[_Step], ...] = get_args(get_args(Step)[0])


class Journey(_Model):
    name: str
    description: str | None = None
    entry: Entry = Field(default_factory=ApiEntry)
    reentry: Reentry = Field(default_factory=Reentry)
    goal: Goal | None = None
    exits: list[ExitRule] = Field(default_factory=list)
    timezone: str = "Asia/Shanghai"
    quiet_hours: QuietHours | None = None
    message_limit: MessageLimit | None = None
    when_capped: CapPolicy | None = None
    # ``priority 1`` (first) … ``priority 10``; ``high`` / ``normal`` / ``low``
    # are 2 / 5 / 8. None: normal. When the caps leave a user room for one
    # more message, the journey with the better priority gets it (engine.caps).
    priority: int | None = None
    steps: list[Step] = Field(default_factory=list)

    def content_hash(self) -> str:
        """A hash of what the journey does (spans left out), so reformatting or
        moving comments does not make a new version."""
        data = self.model_dump(mode="json", exclude_none=False)
        canonical = json.dumps(_strip_spans(data), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


# Fields added after journeys were first deployed: left out of the content
# hash while unset, so a journey that does not use them keeps the hash (and
# so the version) it was deployed with.
_HASHED_WHEN_SET = frozenset({"when_capped", "calendar", "priority", "test", "computed"})


def _strip_spans(value: object) -> object:
    if isinstance(value, dict):
        return {
            k: _strip_spans(v) for k, v in value.items() if k != "span" and not (v is None and k in _HASHED_WHEN_SET)
        }
    if isinstance(value, list):
        return [_strip_spans(v) for v in value]
    return value


for _m in (NotCond, AndCond, OrCond, CouponStep, WaitEventStep, Branch, IfStep, Variant, SplitStep, Journey):
    _m.model_rebuild()


def iter_conds(cond: Cond | None) -> Iterator[Cond]:
    """Every condition in a condition tree, the tree itself first (pre-order);
    nothing for ``None``. The one walk the checker and the evaluator share."""
    if cond is None:
        return
    stack: list[Cond] = [cond]
    while stack:
        node = stack.pop()
        yield node
        operands = node.operands_of()
        if operands:
            stack.extend(reversed(operands))


def iter_steps(steps: list[Step]) -> Iterator[Step]:
    """Every step in document order, nested blocks included."""
    # iterative (journeys can be long and deep), with a per-kind lookup of
    # nested blocks: every check and id pass walks all steps this way
    stack = [iter(steps)]
    while stack:
        for step in stack[-1]:
            yield step
            blocks = _BLOCKS.get(type(step), child_blocks)
            if blocks is not None:
                nested = blocks(step)
                if nested:
                    stack.append(iter([s for block in nested for s in block]))
                    break
        else:
            stack.pop()


def child_blocks(step: Step) -> list[list[Step]]:
    """The nested blocks of a step, in document order (``step.blocks()``)."""
    return step.blocks()


# step class -> how to find its nested blocks, None for the kinds that never
# have any (``iter_steps`` then skips the call: most steps are leaves)
_BLOCKS = {cls: None if cls.blocks is _Step.blocks else cls.blocks for cls in STEP_KINDS}
