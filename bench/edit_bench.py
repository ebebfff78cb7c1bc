"""Round trip of a structured edit (edit → new text + diagnostics + diagram +
outline) on a 200-step journey with comments, beside a plain re-check of the
same text, all in the same run so the machine's speed cancels out.

    .venv/bin/python -m bench.edit_bench [rounds]

Rounds are a chain, as the diagram editor makes them: each edits another
step of the text the previous round answered (a new text every time, so no
round meets its output in a cache). Lines:

- ``edit (route)``: ``api.routes.edit._edit``, all the server does for
  ``POST /v1/journeys/edit`` — the input text is the previous answer, as the
  editor sends it;
- ``undo (its inverse)``: the answer's ``restore_lines`` sent back, which
  lands on a text the route parsed and drew a moment ago;
- ``edit, typed since``: the same with the input text never seen before (the
  operator typed in the text pane between two diagram edits);
- ``edit + check_text``: the round trip as first built — ``apply_edit`` (two
  parses) then ``/check``'s ``check_text`` (a third parse, check, diagram);
- ``plain re-check``: ``check_text`` of the same text (what typing costs);
- then the parts: parse, check, diagram, outline of one text.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable

from api.routes.check import check_text
from api.routes.edit import _DIAGRAMS, EditIn, _diagram, _edit, outline
from dsl import check, parse
from dsl.edits import _PARSED, EDIT, apply_edit, parsed
from dsl.render import to_svg

STEPS = 200


def journey_text(steps: int = STEPS) -> str:
    lines = ['journey "长旅程 bench"', "  entry event joined", "  reentry once", ""]
    for i in range(steps // 2):
        lines += [f"  # 第 {i} 步", f'  send sms "tpl_{i}"  # 短信', f"  wait {i + 1}m"]
    return "\n".join(lines) + "\n"


def _edit_of(source: str, i: int) -> dict[str, object]:
    """Round ``i`` sets the duration of the ``i``-th wait (each round another)."""
    wait = parse(source, "<bench>").steps[2 * (i % (STEPS // 2)) + 1]
    return {"op": "replace_step", "node": wait.id, "step": {"kind": "wait", "seconds": 3600 * (i + 1)}}


def _forget() -> None:
    """Empty the edit path's caches of parsed texts and diagrams."""
    _PARSED.clear()
    _DIAGRAMS.clear()


def _ms(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))] * 1000


def _line(name: str, samples: list[float]) -> str:
    return f"{name:<22} p50 {statistics.median(samples) * 1000:6.1f} ms   p99 {_ms(samples, 0.99):6.1f} ms   max {max(samples) * 1000:6.1f} ms"


def _timed(samples: list[float], run: Callable[[], object]) -> object:
    started = time.perf_counter()
    out = run()
    samples.append(time.perf_counter() - started)
    return out


def main(rounds: int = 100) -> None:
    rounds = min(rounds, STEPS // 2)
    base = journey_text()
    route: list[float] = []
    undo: list[float] = []
    typed: list[float] = []
    first_built: list[float] = []
    recheck: list[float] = []
    parts: dict[str, list[float]] = {"parse": [], "check": [], "diagram (to_svg)": [], "outline": []}

    # warm up imports and lazily built tables once, out of the samples
    _edit(EditIn(source=base, edit=EDIT.validate_python(_edit_of(base, 0))), None)
    check_text(base, None, None, False)

    source = base
    for i in range(rounds):
        edit = EDIT.validate_python(_edit_of(source, i))
        answer = _timed(route, lambda: _edit(EditIn(source=source, edit=edit), None))  # noqa: B023
        back = answer.inverse  # type: ignore[attr-defined]
        _timed(undo, lambda: _edit(EditIn(source=answer.source, edit=back), None))  # type: ignore[attr-defined]  # noqa: B023
        _forget()  # the text was typed: nothing parsed or drew it yet
        _timed(typed, lambda: _edit(EditIn(source=source, edit=edit), None))  # noqa: B023
        _forget()

        def as_first_built() -> None:
            result = apply_edit(source, edit)  # noqa: B023
            check_text(result.source, None, None, False)

        _timed(first_built, as_first_built)
        _forget()
        _timed(recheck, lambda: check_text(source, None, None, False))  # noqa: B023

        journey = _timed(parts["parse"], lambda: parse(source, "<bench>"))  # noqa: B023
        _timed(parts["check"], lambda: check(journey, source, "<bench>"))  # noqa: B023
        _timed(parts["diagram (to_svg)"], lambda: to_svg(journey))  # noqa: B023
        _timed(parts["outline"], lambda: outline(journey))  # noqa: B023

        source = answer.source  # type: ignore[attr-defined]
        _forget()
        _diagram(source, parsed(source))  # as the route's answer left it: the next edit's input is known
        gc.collect()

    print(f"{STEPS}-step journey with comments, {rounds} rounds, one run:")
    print(_line("edit (route)", route))
    print(_line("undo (its inverse)", undo))
    print(_line("edit, typed since", typed))
    print(_line("edit + check_text", first_built))
    print(_line("plain re-check", recheck))
    for name, samples in parts.items():
        print(_line("  " + name, samples))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
