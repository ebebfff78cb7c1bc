"""``journeys check | fmt | graph``: the language's command-line face.

``add_subcommands`` plugs these into any argparse dispatcher (``api.cli``
uses it); ``main`` runs them alone. Every function returns an exit code
instead of exiting, so tests can call ``main([...])`` directly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from dsl.checker import Profiles, Registry, check
from dsl.errors import Diagnostic, JourneyError
from dsl.formatter import format_journey
from dsl.ir import Journey
from dsl.limits import MAX_SOURCE_CHARS
from dsl.parser import parse

SUFFIX = ".journey"


def _files(paths: list[str]) -> tuple[list[Path], list[str]]:
    """The journey files named or found under directories; and missing paths."""
    found: list[Path] = []
    missing: list[str] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            found.extend(sorted(path.rglob(f"*{SUFFIX}")))
        elif path.is_file():
            found.append(path)
        else:
            missing.append(name)
    return found, missing


def _read(path: Path, out: TextIO) -> str | None:
    """The file's text; a file too big to be a journey is not read at all
    (UTF-8 takes at most 4 bytes a character; ``parse`` counts the characters)."""
    try:
        size = path.stat().st_size
        if size > 4 * MAX_SOURCE_CHARS:
            print(f"{path}: error[E130]: {size:,} bytes is too big for a journey", file=out)
            return None
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        print(f"{path}: error: cannot read: {exc}", file=out)
        return None


def _compile(
    path: Path, out: TextIO, global_daily_limit: int | None = None, registry: Registry | None = None
) -> tuple[Journey | None, list[Diagnostic]]:
    """Parse and check one file, printing every diagnostic."""
    source = _read(path, out)
    if source is None:
        return None, [Diagnostic("E000", "cannot read", 1, 1)]
    try:
        journey = parse(source, str(path))
    except JourneyError as exc:
        print(exc.render(), file=out)
        return None, exc.diagnostics
    diagnostics = check(journey, source, str(path), registry, global_daily_limit=global_daily_limit)
    for diag in diagnostics:
        print(diag.render(source, str(path)), file=out)
    return journey, diagnostics


def cmd_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    files, missing = _files(args.paths)
    for name in missing:
        print(f"{name}: error: no such file or directory", file=out)
    errors = warnings = 0
    profiles = getattr(args, "profiles", None)
    registry = Registry(profiles=profiles()) if profiles is not None else None
    for path in files:
        _, diagnostics = _compile(path, out, args.global_daily_limit, registry)
        errors += sum(d.severity == "error" for d in diagnostics)
        warnings += sum(d.severity == "warning" for d in diagnostics)
    plural = "s" if len(files) != 1 else ""
    print(f"checked {len(files)} file{plural}: {errors} error(s), {warnings} warning(s)", file=out)
    return 1 if errors or missing or not files else 0


def cmd_fmt(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    path = Path(args.file)
    source = _read(path, out)
    if source is None:
        return 1
    try:
        journey = parse(source, str(path))
    except JourneyError as exc:
        print(exc.render(), file=out)
        return 1
    text = format_journey(journey, source)
    if args.check:
        if text != source:
            print(f"{path}: not formatted", file=out)
            return 1
        return 0
    if args.write:
        if text != source:
            path.write_text(text, encoding="utf-8")
            print(f"formatted {path}", file=out)
        return 0
    out.write(text)
    return 0


def cmd_graph(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    path = Path(args.file)
    journey, diagnostics = _compile(path, out)
    if journey is None or any(d.severity == "error" for d in diagnostics):
        return 1
    from dsl import render  # written separately; imported lazily so check/fmt never need it

    text = render.to_mermaid(journey) if args.mermaid else render.to_svg(journey)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(f"wrote {args.output}", file=out)
    else:
        out.write(text if text.endswith("\n") else text + "\n")
    return 0


def add_subcommands(
    subparsers: argparse._SubParsersAction, profiles: Callable[[], Profiles | None] | None = None
) -> None:
    """Add ``check``, ``fmt`` and ``graph``; each sets ``func(args) -> int``.
    ``profiles``: the stage/RFM pairs the service's rules allow (W309),
    asked for only when ``check`` runs; the language alone does not know them."""
    p = subparsers.add_parser("check", help="check journey files (exit 1 on errors)")
    p.add_argument("paths", nargs="+", metavar="FILE_OR_DIR")
    p.add_argument("--global-daily-limit", type=int, default=None, help="warn when a journey can exceed it")
    p.set_defaults(func=cmd_check, profiles=profiles)

    p = subparsers.add_parser("fmt", help="print a journey in canonical form")
    p.add_argument("file", metavar="FILE")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the file in place")
    mode.add_argument("--check", action="store_true", help="exit 1 if the file is not formatted")
    p.set_defaults(func=cmd_fmt)

    p = subparsers.add_parser("graph", help="draw a journey as SVG (or Mermaid text)")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--mermaid", action="store_true", help="print Mermaid text instead of SVG")
    p.add_argument("-o", "--output", metavar="OUT", help="write to this file instead of stdout")
    p.set_defaults(func=cmd_graph)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="journeys", description="The journey language tools.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_subcommands(subparsers)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
