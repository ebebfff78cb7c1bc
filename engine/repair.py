"""Repair stored rows holding invalid Unicode (lone UTF-16 surrogates).

Before the API refused them (``api.bodies``), a JSON body could carry
``"\\ud83d"``: Python keeps it as a one-character ``str`` that no encoder
takes, so the row was stored (JSON columns are written with ASCII escapes)
but every later use that encodes it fails: the user's profile page and API,
the journey start that copies an event's properties, the redispatch sweep
that retries the event every round. ``repair_unicode`` finds those rows and
replaces each lone surrogate with U+FFFD (the replacement character), keys
included; surrogate *pairs* (an emoji spelt as two escapes) are whole
characters once parsed and are left alone. Running it twice changes nothing
the second time.

Where they can be: the JSON columns listed in ``JSON_COLUMNS``. Plain text
columns (``identities.value``, event names) cannot hold one: both the SQLite
and the PostgreSQL driver refuse to encode it, so such a write failed instead
of being stored. On PostgreSQL the columns are ``json`` (stored as sent, with
the escapes), so rows there are found and repaired the same way.

Candidates are found in SQL by the escape's text (``\\ud8``..``\\udf``), then
checked in Python, in batches, one transaction per batch.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import Text, cast, or_, select
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.orm.attributes import flag_modified

from engine.store import Store
from engine.store.models import Event, Run, User, UserMerge

REPLACEMENT = "\ufffd"
_LONE = re.compile("[\ud800-\udfff]")
# What PostgreSQL's jsonb refuses in a string: a lone surrogate and NUL (0017).
JSONB_REFUSED = re.compile("[\ud800-\udfff\x00]")

# (model, JSON column) pairs that data from requests reaches.
JSON_COLUMNS: list[tuple[type[Any], str]] = [
    (User, "attributes"),
    (Event, "properties"),
    (Event, "outcome"),
    (Run, "trigger_event"),
    (UserMerge, "detail"),
]


@dataclass
class RepairReport:
    """Rows rewritten (or, in a dry run, that would be), per ``table.column``."""

    rows: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few primary keys per column

    @property
    def total(self) -> int:
        return sum(self.rows.values())


def clean(value: Any, refused: re.Pattern[str] = _LONE) -> tuple[Any, bool]:
    """``value`` with the characters ``refused`` matches (lone surrogates)
    replaced in every string and key, and whether anything changed."""
    if isinstance(value, str):
        fixed = refused.sub(REPLACEMENT, value)
        return fixed, fixed != value
    if isinstance(value, list):
        items = [clean(v, refused) for v in value]
        return [v for v, _ in items], any(c for _, c in items)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        changed = False
        for key, child in value.items():
            new_key, key_changed = clean(key, refused) if isinstance(key, str) else (key, False)
            new_child, child_changed = clean(child, refused)
            if new_key in out:  # "a\ud83d" and "a\ufffd" both present: keep the valid one's value
                changed = True
                continue
            out[new_key] = new_child
            changed = changed or key_changed or child_changed
        return out, changed
    return value, False


def _candidates(column: InstrumentedAttribute[Any]) -> Any:
    """Rows whose stored JSON text spells a surrogate escape (``\\uD800``-``\\uDFFF``)."""
    text = cast(column, Text)
    return or_(*(text.ilike(f"%\\ud{digit}%", escape="!") for digit in "89abcdef"))


def _repair_batch(
    session: Session, model: type[Any], name: str, after: Any, batch: int, dry_run: bool
) -> tuple[Any, int, list[str]]:
    """One page of candidates after primary key ``after``: (last key seen,
    rows seen, keys of the rows rewritten)."""
    column: InstrumentedAttribute[Any] = getattr(model, name)
    pk = model.__mapper__.primary_key[0]
    query = select(model).where(_candidates(column)).order_by(pk).limit(batch)
    if after is not None:
        query = query.where(pk > after)
    rows = list(session.scalars(query))
    fixed: list[str] = []
    for row in rows:
        value, changed = clean(getattr(row, name))
        if changed:
            fixed.append(str(getattr(row, pk.key)))
            if not dry_run:
                setattr(row, name, value)
                flag_modified(row, name)
    return (getattr(rows[-1], pk.key) if rows else None), len(rows), fixed


def repair_unicode(store: Store, *, dry_run: bool = False, batch: int = 500) -> RepairReport:
    """Rewrite every stored row holding a lone surrogate (see the module docstring)."""
    report = RepairReport()
    for model, name in JSON_COLUMNS:
        label = f"{model.__tablename__}.{name}"
        last: Any = None
        while True:
            work = partial(_repair_batch, model=model, name=name, after=last, batch=batch, dry_run=dry_run)
            last, seen, fixed = store.transact(work)
            if fixed:
                report.rows[label] = report.rows.get(label, 0) + len(fixed)
                examples = report.examples.setdefault(label, [])
                examples.extend(fixed[: max(0, 5 - len(examples))])
            if seen < batch:
                break
    return report


def _command(args: argparse.Namespace) -> int:
    from engine.settings import Settings

    store = Store.from_settings(Settings())
    try:
        report = repair_unicode(store, dry_run=args.dry_run)
    finally:
        store.dispose()
    verb = "would rewrite" if args.dry_run else "rewrote"
    if not report.rows:
        print("no stored row holds a lone surrogate")
    for label, count in report.rows.items():
        print(f"{verb} {count} row(s) of {label} (e.g. {', '.join(report.examples[label])})")
    return 0


def add_repair_command(
    subparsers: argparse._SubParsersAction, name: str, help: str, dry_run: str, func: Callable[..., int]
) -> None:
    """A ``journeys repair-…`` command: ``--dry-run`` says what it would do."""
    parser = subparsers.add_parser(name, help=help)
    parser.add_argument("--dry-run", action="store_true", help=dry_run)
    parser.set_defaults(func=func)


def add_subcommands(subparsers: argparse._SubParsersAction) -> None:
    add_repair_command(
        subparsers,
        "repair-unicode",
        "replace lone surrogates stored before ingest refused them (users, events, runs) with U+FFFD",
        "count the rows, change nothing",
        _command,
    )
