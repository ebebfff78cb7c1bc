"""Audience conditions compiled to SQL over ``users`` rows, leaf by leaf.

Each leaf becomes a :class:`Leaf`: ``expr`` is the condition's answer for the
rows SQL can decide, and ``unsure`` marks the rows it cannot (``None``: it
decides every row). ``engine.audience`` turns those into bounds
(``upper = expr or unsure``, ``lower = expr and not unsure``) and checks only
the unsure rows in Python, with the very evaluator a journey's ``if`` uses, so
the compiled selection never answers differently from
``contracts.conditions.evaluate`` over the user's snapshot at ``now``.

Every expression here is two-valued (never SQL ``NULL``), so ``not`` over it
means what the evaluator's ``not`` means.

What compiles exactly, and what stays unsure:

- plain tags: ``EXISTS`` on ``tags``; ``stage:x`` / ``rfm:x`` tags are the
  derived values at ``now`` (the snapshot drops stored ones), as below;
- lifecycle stage: the rules of ``engine.derived.compute`` over the user's
  first/last event and last payment, all kept on ``users``
  (``first_event_at``/``last_event_at``/``last_payment_at``); a last payment
  taken with other payment names than the rules' (``users.payment_events``)
  is aggregated from the events instead;
- RFM layer: the same, with the window's payment count and amount sum; a
  payment whose amount is a non-empty *string* makes the user unsure (Python's
  ``float()`` accepts spellings SQL casts do not);
- ``count X within W``: the user's count of X since ``now - W``.

Those event facts come from one grouped subquery over ``events``
(:class:`Facts`), left-joined to ``users`` on ``user_id`` and bounded to the
page's range of user ids when the caller pages (``engine.audience``): one
index range scan per page, not a correlated aggregate per fact per row. At
1M users / 4.4M events on PostgreSQL the correlated form took tens of seconds
for a full selection (bench/audience_bench.py prints both).
- ``reachable``: an address identity of the channel's kind and no opt-out;
- ``user.attr`` comparisons, per JSON type of the stored value, following
  ``contracts.conditions._compare``'s coercions: strings against strings (code
  point order: SQLite ``BINARY``, PostgreSQL ``COLLATE "C"``), numbers against
  numbers, booleans as 0/1, a digits-only string against a number; a string
  that may parse as a float some other way, a number compared with a string,
  and integers beyond 2**53 are unsure.

Without ``now`` (no broadcast time given), stage, RFM and windowed counts are
unsure for every row, which is the previous all-Python behaviour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    ColumnElement,
    Float,
    String,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql

from dsl.ir import CompareCond, EventCountCond, ReachableCond, RfmCond, StageCond, TagCond
from engine.channels.base import ADDRESS_KIND
from engine.derived import payment_mark
from engine.settings import DerivedRules
from engine.store.models import Consent, Event, Identity, Tag, User
from engine.store.types import utc

STAGE_PREFIX = "stage:"
RFM_PREFIX = "rfm:"
# Floats hold every integer below this exactly; beyond it SQL's double and
# Python's int comparison may disagree.
_EXACT_INT = 2**53
# The strings SQL casts to the same number Python's ``float()`` gives.
_DIGITS_MAX = 15

Bool = ColumnElement[bool]
# A bound of a window of user ids: a value, or a parameter bound at execution
# (``engine.audience`` builds a window's statement once for all its windows).
IdBound = str | ColumnElement[str]


@dataclass(frozen=True)
class Leaf:
    expr: Bool
    unsure: Bool | None = None


ALL_UNSURE = Leaf(false(), true())


@dataclass(frozen=True)
class CompileContext:
    """``now`` and the derived rules stage/RFM/windows are judged with, and the
    dialect the JSON functions are spelt for (``sqlite`` or ``postgresql``)."""

    dialect: str
    now: datetime | None = None
    rules: DerivedRules | None = None
    facts: Facts | None = None
    # The window of user ids (``after < id <= upto``) the caller reads, when
    # it reads one: tag lookups are bounded to it too (see :func:`has_tag`).
    after: IdBound | None = None
    upto: IdBound | None = None


_PG = postgresql.dialect()  # to ask a column which type it has there


class _Json:
    """Typed reads of one key of a JSON column, per dialect. ``None`` from
    :meth:`of` when the key cannot be spelt (a SQLite path with a quote)."""

    def __init__(self, dialect: str, column: Any, key: str) -> None:
        self.pg = dialect == "postgresql"
        self.column = column
        self.key = key
        if self.pg:
            # ``users.attributes`` is jsonb there (0017): a key is read from the
            # stored tree, where every ``->`` on ``json`` parses the text again
            # (25 of a 1M-user window query's 43 ms). Events stay ``json``.
            binary = isinstance(column.type.dialect_impl(_PG), postgresql.JSONB)
            self._node = column.op("->", return_type=postgresql.JSONB if binary else JSON)(literal(key))
            self._kind = (func.jsonb_typeof if binary else func.json_typeof)(self._node)
        else:
            self._path = f'$."{key}"'
            self._kind = func.json_type(column, self._path)

    @classmethod
    def of(cls, dialect: str, column: Any, key: str) -> _Json | None:
        if dialect != "postgresql" and ('"' in key or "\\" in key):
            return None
        return cls(dialect, column, key)

    def is_text(self) -> Bool:
        return self._kind == ("string" if self.pg else "text")

    def is_number(self) -> Bool:
        return self._kind == "number" if self.pg else self._kind.in_(["integer", "real"])

    def is_bool(self) -> Bool:
        return self._kind == "boolean" if self.pg else self._kind.in_(["true", "false"])

    def is_true(self) -> Bool:
        return and_(self._kind == "boolean", self.text() == "true") if self.pg else self._kind == "true"

    def text(self) -> ColumnElement[str]:
        if self.pg:
            return self.column.op("->>", return_type=String)(literal(self.key))
        return func.json_extract(self.column, self._path)

    def number(self) -> ColumnElement[float]:
        if self.pg:
            return cast(self.text(), postgresql.DOUBLE_PRECISION)
        return cast(func.json_extract(self.column, self._path), Float)

    def digits(self) -> Bool:
        """A plain unsigned integer spelt in ASCII digits (exact as a float)."""
        value = self.text()
        if self.pg:
            return value.op("~", is_comparison=True)(f"^[0-9]{{1,{_DIGITS_MAX}}}$")
        return and_(func.length(value).between(1, _DIGITS_MAX), not_(value.op("GLOB", is_comparison=True)("*[^0-9]*")))

    def bool_number(self) -> ColumnElement[int]:
        return case((self.is_true(), 1), else_=0)

    def ordered_text(self) -> ColumnElement[str]:
        """The string for ``<``/``>``: code point order, as Python compares."""
        return self.text().collate("C") if self.pg else self.text()


def _cmp(left: Any, op: str, right: Any) -> Bool:
    if op == "==":
        return left == right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    raise ValueError(f"unknown operator {op}")


def _or_unsure(*parts: Bool | None) -> Bool | None:
    present = [p for p in parts if p is not None]
    return or_(*present) if present else None


# ---------------------------------------------------------------- attributes


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _compare_one(j: _Json, op: str, expected: Any) -> Leaf:
    """``==`` or an ordering of the stored value against one scalar; a missing
    or null value is false for both (``_compare``)."""
    if isinstance(expected, bool):
        as_int = int(expected)
        number = case((j.is_number(), j.number()), else_=j.bool_number())
        return Leaf(and_(or_(j.is_number(), j.is_bool()), _cmp(number, op, as_int)), _big_number(j))
    if _is_number(expected):
        if not math.isfinite(expected) or abs(expected) >= _EXACT_INT:
            return ALL_UNSURE
        num = float(expected)
        text_num = cast(j.text(), postgresql.DOUBLE_PRECISION if j.pg else Float)
        empty = j.text() == ""
        # float("") fails, so "" is compared as a string with str(expected): it sorts first.
        empty_answer = true() if op in ("<", "<=") else false()
        expr = case(
            (j.is_number(), _cmp(j.number(), op, num)),
            (j.is_bool(), _cmp(j.bool_number(), op, num)),
            (and_(j.is_text(), empty), empty_answer),
            (and_(j.is_text(), j.digits()), _cmp(text_num, op, num)),
            else_=false(),
        )
        unsure = or_(and_(j.is_text(), not_(empty), not_(j.digits())), _big_number(j))
        return Leaf(expr, unsure)
    if isinstance(expected, str):
        left = j.text() if op == "==" else j.ordered_text()
        expr = case((j.is_text(), _cmp(left, op, expected)), else_=false())
        return Leaf(expr, j.is_number())
    return ALL_UNSURE


def _big_number(j: _Json) -> Bool:
    # CASE, not AND: PostgreSQL may evaluate AND's operands in any order, and
    # casting a string to a number fails there.
    return case((j.is_number(), func.abs(j.number()) >= float(_EXACT_INT)), else_=false())


def _two(leaf: Leaf) -> Leaf:
    """JSON reads are NULL for a missing key: made two-valued before any ``not``."""
    return Leaf(func.coalesce(leaf.expr, false()), None if leaf.unsure is None else func.coalesce(leaf.unsure, false()))


def compile_compare(cond: CompareCond, ctx: CompileContext) -> Leaf:
    if cond.subject != "user":  # an audience has no event: every field is missing
        return Leaf(true() if cond.op in ("!=", "not in") else false())
    j = _Json.of(ctx.dialect, User.attributes, cond.field)
    if j is None:
        return ALL_UNSURE
    if cond.op in ("in", "not in", "==", "!="):
        values = cond.value if isinstance(cond.value, list) and cond.op in ("in", "not in") else [cond.value]
        if any(isinstance(v, list) for v in values):
            return ALL_UNSURE
        leaves = [_two(_compare_one(j, "==", v)) for v in values]
        found = Leaf(or_(false(), *[x.expr for x in leaves]), _or_unsure(*[x.unsure for x in leaves]))
        return found if cond.op in ("in", "==") else Leaf(not_(found.expr), found.unsure)
    if isinstance(cond.value, list):
        return ALL_UNSURE
    return _two(_compare_one(j, cond.op, cond.value))


# ---------------------------------------------------------------- tags, reach, counts


def has_tag(tag: str, ctx: CompileContext | None = None) -> Bool:
    """A tag row. Under an ``or`` PostgreSQL runs it as a *hashed* subplan:
    every row with the tag is read and hashed once per query (a ``vip`` of
    100k users: 0.2-0.7 s, per page). Bounded to the caller's window of users,
    the hash holds only that window's rows (``ix_tags_tag_user``)."""
    return _has_row(Tag.user_id, ctx, Tag.tag == tag)


def _has_row(user_id: Any, ctx: CompileContext | None, *where: Bool) -> Bool:
    """Whether the user has a row of ``user_id``'s table matching ``where``.
    Over a window, ``users.id IN (the window's rows)``: negated, that is one
    hashed subplan of the window's rows, where ``NOT EXISTS`` let PostgreSQL
    plan an anti join that, misled by a LIMIT, re-read the window's opt-outs
    for every user (96 of a page's 120 ms for ``reachable sms``). Unbounded
    (a whole-audience count), ``EXISTS``: a hash anti join over the table,
    where a ``NOT IN`` too large for ``work_mem`` would rescan it per user.
    Both are two-valued: neither id is ever ``NULL``."""
    window = _in_window(user_id, ctx)
    if window:
        return User.id.in_(select(user_id).where(*where, *window))
    return exists().where(user_id == User.id, *where)


def _in_window(user_id: Any, ctx: CompileContext | None) -> list[Bool]:
    if ctx is None:
        return []
    return [
        *([user_id > ctx.after] if ctx.after is not None else []),
        *([user_id <= ctx.upto] if ctx.upto is not None else []),
    ]


def compile_reachable(cond: ReachableCond, ctx: CompileContext | None = None) -> Leaf:
    """``engine.consent.Reach``: an address of the channel's kind (none needed
    for webhook) and no opt-out of the channel. Bounded to the caller's
    window as :func:`has_tag` is (under an ``or`` PostgreSQL hashes them)."""
    if cond.channel not in ADDRESS_KIND:
        return Leaf(false())
    kind = ADDRESS_KIND[cond.channel]
    address = true() if kind is None else _has_row(Identity.user_id, ctx, Identity.kind == kind)
    opted_out = _has_row(Consent.user_id, ctx, Consent.channel == cond.channel, Consent.opted_out.is_(True))
    return Leaf(and_(address, not_(opted_out)))


def count_key(cond: EventCountCond) -> tuple[str, int | None]:
    """The (event, window) a count leaf reads: one facts column each."""
    return cond.event, cond.within_seconds or None


def compile_count(cond: EventCountCond, ctx: CompileContext) -> Leaf:
    """As the snapshot counts: ``within`` is ``occurred_at > now - within``
    (none when 0 or unset)."""
    if cond.within_seconds and ctx.now is None:
        return ALL_UNSURE
    assert ctx.facts is not None, "sql_bounds builds the facts a count reads"
    n = ctx.facts.count(count_key(cond))
    op = {"in": "==", "not in": "!="}.get(cond.op, cond.op)
    return Leaf(n != cond.value if op == "!=" else _cmp(n, op, cond.value))


# ---------------------------------------------------------------- event facts


@dataclass(frozen=True)
class FactNeeds:
    """Which event aggregates a condition reads: stage (the last payment; the
    first and last event are on ``users``), RFM (the last payment, the
    window's payments) and counts."""

    stage: bool = False
    rfm: bool = False
    counts: tuple[tuple[str, int | None], ...] = ()
    rfm_layers: frozenset[str] = frozenset()  # the layers the RFM leaves ask for

    def __bool__(self) -> bool:
        return self.stage or self.rfm or bool(self.counts)


class Facts:
    """Per-user event aggregates at ``now`` as one grouped subquery, to be
    left-joined to ``users`` (:meth:`join`); a user without events gets
    ``NULL`` maxima and zero counts, as the correlated aggregates gave.

    ``after``/``upto`` bound it to a range of user ids (the page being read),
    so PostgreSQL reads that range of ``ix_events_user_at`` once instead of a
    whole-table aggregate or a probe per user per fact. Only the event names
    the condition reads are scanned: payments for stage and RFM, the counted
    names for counts. A user's first and last event (any name) are not
    aggregated here: they are kept on ``users`` at ingest (``engine.derived``)."""

    def __init__(
        self,
        needs: FactNeeds,
        ctx: CompileContext,
        *,
        after: IdBound | None = None,
        upto: IdBound | None = None,
    ) -> None:
        rules = ctx.rules or DerivedRules()
        self.rules = rules
        where_rows: list[Bool] = []
        if after is not None:
            where_rows.append(Event.user_id > after)
        if upto is not None:
            where_rows.append(Event.user_id <= upto)
        counted = {event for event, _ in needs.counts}
        payments = set(rules.payment_events) if needs.stage or needs.rfm else set()
        whose = _whose_payments(needs, ctx, after, upto)
        if whose is not None:
            # Only these users' payments are aggregated (counts of a payment
            # name still read them all).
            alone = sorted(payments - counted)
            names = [Event.name.in_(sorted(counted))] if counted else []
            if alone:
                names.append(and_(Event.name.in_(alone), whose))
            where_rows.append(or_(*names) if names else false())
        else:
            where_rows.append(Event.name.in_(sorted(payments | counted)))
        sums = needs.rfm and ctx.now is not None
        rows, raw = _event_rows(ctx.dialect, where_rows, rules.amount_property if sums else None)
        payment = rows.c.name.in_(rules.payment_events)
        at = rows.c.occurred_at
        cols: dict[str, ColumnElement[Any]] = {}
        self.amount_known = True
        if needs.stage or needs.rfm:
            cols["last_payment"] = func.max(case((payment, at), else_=None))
        if sums:
            assert ctx.now is not None
            in_window = and_(payment, at > utc(ctx.now) - timedelta(days=rules.rfm_window_days))
            cols["pay_n"] = func.count(case((in_window, 1), else_=None))
            read = _amount(ctx.dialect, rules.amount_property, raw)
            if read is None:
                self.amount_known = False
            else:
                amount, text_amount = read
                cols["pay_sum"] = func.sum(case((in_window, amount), else_=0.0))
                cols["pay_text"] = func.max(case((and_(in_window, text_amount), 1), else_=0))
        self._counts: dict[tuple[str, int | None], str] = {}
        for i, (event, within) in enumerate(needs.counts):
            where = [rows.c.name == event]
            if within:
                if ctx.now is None:
                    continue
                where.append(at > utc(ctx.now) - timedelta(seconds=within))
            self._counts[(event, within)] = f"n{i}"
            cols[f"n{i}"] = func.count(case((and_(*where), 1), else_=None))
        stmt = select(rows.c.user_id.label("user_id"), *[c.label(k) for k, c in cols.items()]).select_from(rows)
        if raw is None:  # the table itself: filter here
            stmt = stmt.where(*where_rows)
        self.table = stmt.group_by(rows.c.user_id).subquery("facts")

    def join(self, users: Any) -> Any:
        return users.outerjoin(self.table, self.table.c.user_id == User.id)

    def col(self, name: str) -> ColumnElement[Any]:
        return self.table.c[name]

    def count(self, key: tuple[str, int | None]) -> ColumnElement[int]:
        return func.coalesce(self.table.c[self._counts[key]], 0)


def _whose_payments(needs: FactNeeds, ctx: CompileContext, after: IdBound | None, upto: IdBound | None) -> Bool | None:
    """The events' users (in the window) whose payments the facts must
    aggregate, or None: everyone's. A user's last payment is kept on
    ``users`` where it was taken with the rules' payment names
    (:meth:`Derived.kept_last_payment`), so:

    - the stage needs no user's payments but those not kept;
    - when every RFM leaf asks for ``high`` alone, RFM adds only the kept
      users with R (last payment at most the recency days old): the others
      are not high whatever their payments add up to. For other layers every
      payer's payments are read: limiting them to users with a payment in
      the window (all but a few) measured slower at 1M users (the semi-join
      costs more than it saves: ``rfm is low and reachable sms`` 11.9 s
      against 10.6 s without it).

    Over an alias of ``users``: the outer query's ``users`` must not
    correlate into it."""
    rules = ctx.rules or DerivedRules()
    mark = payment_mark(rules.payment_events)
    if mark is None or not (needs.stage or needs.rfm):
        return None
    kept = User.__table__.alias("kept")
    needed: Bool = or_(kept.c.payment_events.is_(None), kept.c.payment_events != mark)
    if needs.rfm:
        if ctx.now is None:
            return None
        if needs.rfm_layers != {"high"}:
            return None
        # R is ``last payment >= now - recency`` (Derived.rfm)
        recent = kept.c.last_payment_at >= utc(ctx.now) - timedelta(days=rules.rfm_recency_days)
        needed = or_(needed, recent)
    window = [*([kept.c.id > after] if after is not None else []), *([kept.c.id <= upto] if upto is not None else [])]
    return Event.user_id.in_(select(kept.c.id).where(needed, *window))


def _event_rows(dialect: str, where_rows: list[Bool], amount_key: str | None) -> tuple[Any, ColumnElement[str] | None]:
    """The events the facts aggregate, and on PostgreSQL, when amounts are
    summed, the JSON text of each one's amount (``properties -> key``) read
    once per row: a subquery fenced with ``OFFSET 0`` so the planner does
    not pull it up and spell the read again in each use (``events.properties``
    is ``json``: every ``->`` parses the text; three per payment were 23 of a
    1M-user window's 45 ms). Elsewhere the table itself (filtered by the
    caller) and no text."""
    if dialect != "postgresql" or amount_key is None:
        return Event.__table__, None
    raw = cast(Event.properties.op("->", return_type=JSON)(literal(amount_key)), Text).label("amount_json")
    # ORDER BY: the index's order, which the fence would hide from the grouping (a sort)
    stmt = select(Event.user_id, Event.name, Event.occurred_at, raw).where(*where_rows).order_by(Event.user_id)
    rows = stmt.offset(0).subquery("rows")
    return rows, rows.c.amount_json


def _amount(dialect: str, key: str, raw: ColumnElement[str] | None) -> tuple[ColumnElement[float], Bool] | None:
    """A payment's amount as ``engine.derived._amount`` adds it — a number as
    it is, ``true`` as 1, anything else 0 — and whether it is a non-empty
    string (Python's ``float()`` may parse it: unsure). ``None`` when the key
    cannot be spelt.

    On PostgreSQL from ``raw``, the JSON text of the value alone
    (:func:`_event_rows`: a number starts with ``-`` or a digit, a string
    with a quote): ``json_typeof`` beside ``->>`` parsed
    ``events.properties`` four times per payment, 53 against 29 ms for a
    window's 12k payments."""
    if dialect == "postgresql":
        assert raw is not None, "_event_rows reads the amount's text on PostgreSQL"
        first = func.substr(raw, 1, 1)
        amount = case(
            (first.in_(["-", *"0123456789"]), cast(raw, postgresql.DOUBLE_PRECISION)),
            (raw == "true", 1.0),
            else_=0.0,
        )
        return amount, and_(first == '"', raw != '""')
    j = _Json.of(dialect, Event.properties, key)
    if j is None:
        return None
    return case((j.is_number(), j.number()), (j.is_true(), 1.0), else_=0.0), and_(j.is_text(), j.text() != "")


# ---------------------------------------------------------------- stage and RFM


class Derived:
    """Stage and RFM layer of the current ``users`` row at ``now``, as SQL
    over the joined :class:`Facts`."""

    def __init__(self, ctx: CompileContext) -> None:
        assert ctx.now is not None and ctx.facts is not None, "sql_bounds builds the facts stage/RFM read"
        self.ctx = ctx
        self.facts = ctx.facts
        self.now = utc(ctx.now)
        self.rules = ctx.rules or DerivedRules()

    def _cut(self, days: int) -> datetime:
        return self.now - timedelta(days=days)

    def kept_last_payment(self) -> ColumnElement[datetime]:
        """``users.last_payment_at`` where it was taken with these payment
        names, else the joined facts' (:class:`Facts` aggregates the others)."""
        mark = payment_mark(self.rules.payment_events)
        if mark is None:
            return self.facts.col("last_payment")
        return case((User.payment_events == mark, User.last_payment_at), else_=self.facts.col("last_payment"))

    def stage(self) -> ColumnElement[str]:
        r = self.rules
        last_payment = self.kept_last_payment()
        last_event = User.last_event_at
        first_event = User.first_event_at
        created = User.created_at
        new_cut, churn_cut = self._cut(r.new_days), self._cut(r.churned_days)
        return case(
            (last_payment >= self._cut(r.paying_days), "paying"),
            (
                and_(last_payment.is_(None), created >= new_cut, or_(first_event.is_(None), first_event >= new_cut)),
                "new",
            ),
            (last_event >= self._cut(r.active_days), "active"),
            (or_(last_event >= churn_cut, and_(last_event.is_(None), created >= churn_cut)), "silent"),
            else_="churned",
        )

    def rfm(self) -> tuple[ColumnElement[str], Bool | None]:
        """(layer or NULL for never paid, rows whose amounts SQL cannot add)."""
        r = self.rules
        last_payment = self.kept_last_payment()
        if not self.facts.amount_known:
            return case((last_payment.is_(None), None), else_="low"), last_payment.is_not(None)
        count = func.coalesce(self.facts.col("pay_n"), 0)
        total = func.coalesce(self.facts.col("pay_sum"), 0.0)
        string_amount = func.coalesce(self.facts.col("pay_text"), 0) == 1
        rec = last_payment >= self._cut(r.rfm_recency_days)
        freq = count >= r.rfm_frequency
        mon = total >= float(r.rfm_monetary)
        layer = case(
            (last_payment.is_(None), None),
            (and_(rec, freq, mon), "high"),
            (or_(rec, freq, mon), "mid"),
            else_="low",
        )
        return layer, string_amount


def compile_stage(stages: list[str], ctx: CompileContext) -> Leaf:
    if ctx.now is None:
        return ALL_UNSURE
    return Leaf(Derived(ctx).stage().in_(stages))


def compile_rfm(layers: list[str], ctx: CompileContext) -> Leaf:
    if ctx.now is None:
        return ALL_UNSURE
    layer, unsure = Derived(ctx).rfm()
    # NULL (never paid) is in no layer; COALESCE rather than ``IS NOT NULL AND``,
    # which spelt the layer's CASE twice (evaluated twice per row).
    return Leaf(func.coalesce(layer.in_(layers), false()), unsure)


def compile_tag(cond: TagCond, ctx: CompileContext) -> Leaf:
    if cond.tag.startswith(STAGE_PREFIX):
        return compile_stage([cond.tag[len(STAGE_PREFIX) :]], ctx)
    if cond.tag.startswith(RFM_PREFIX):
        return compile_rfm([cond.tag[len(RFM_PREFIX) :]], ctx)
    return Leaf(has_tag(cond.tag, ctx))


def compile_leaf(cond: Any, ctx: CompileContext) -> Leaf:
    """One leaf condition (not ``and``/``or``/``not``)."""
    if isinstance(cond, TagCond):
        return compile_tag(cond, ctx)
    if isinstance(cond, CompareCond):
        return compile_compare(cond, ctx)
    if isinstance(cond, StageCond):
        return compile_stage(cond.stages, ctx)
    if isinstance(cond, RfmCond):
        return compile_rfm(cond.layers, ctx)
    if isinstance(cond, EventCountCond):
        return compile_count(cond, ctx)
    if isinstance(cond, ReachableCond):
        return compile_reachable(cond, ctx)
    return ALL_UNSURE
