"""Shared helpers for the language tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dsl import check, parse
from dsl.errors import JourneyError
from dsl.ir import Journey, _strip_spans

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
EXAMPLES = sorted((ROOT / "journeys").glob("*.journey"))
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


def content(journey: Journey) -> Any:
    """The IR without spans: what must survive formatting."""
    return _strip_spans(journey.model_dump(mode="json"))


def diagnostics_text(source: str, filename: str) -> str:
    """Every diagnostic of a file as the CLI renders it (parse errors, or else
    the checker's errors and warnings)."""
    try:
        journey = parse(source, filename)
    except JourneyError as exc:
        return exc.render() + "\n"
    return "\n".join(d.render(source, filename) for d in check(journey, source, filename)) + "\n"
