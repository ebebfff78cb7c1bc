"""The journey language: text → checked IR.

``parse`` reads text (syntax only), ``check`` finds semantic problems,
``compile_source`` / ``load`` do both and raise ``JourneyError`` when any
error-severity diagnostic remains. ``format_journey`` writes canonical text.
"""

from __future__ import annotations

from pathlib import Path

from dsl.checker import Profiles, Registry, check, max_messages
from dsl.errors import Diagnostic, JourneyError
from dsl.formatter import format_journey
from dsl.ir import Journey
from dsl.parser import parse

__all__ = [
    "Diagnostic",
    "Journey",
    "JourneyError",
    "Profiles",
    "Registry",
    "check",
    "compile_source",
    "format_journey",
    "load",
    "max_messages",
    "parse",
]


def compile_source(
    source: str,
    filename: str = "<journey>",
    registry: Registry | None = None,
    global_daily_limit: int | None = None,
    warnings: list[Diagnostic] | None = None,
) -> Journey:
    """Parse and check. Raises ``JourneyError`` (with warnings included, so the
    operator sees everything) if there is any error; otherwise returns the
    journey and appends the warnings to ``warnings`` when given."""
    journey = parse(source, filename)
    diagnostics = check(journey, source, filename, registry, global_daily_limit)
    if any(d.severity == "error" for d in diagnostics):
        raise JourneyError(diagnostics, source=source, filename=filename)
    if warnings is not None:
        warnings.extend(diagnostics)
    return journey


def load(
    path: str | Path,
    registry: Registry | None = None,
    global_daily_limit: int | None = None,
    warnings: list[Diagnostic] | None = None,
) -> Journey:
    """``compile_source`` on a file (UTF-8)."""
    path = Path(path)
    return compile_source(path.read_text(encoding="utf-8"), str(path), registry, global_daily_limit, warnings)
