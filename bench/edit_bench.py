"""Round trip of a structured edit (edit → new text + diagnostics + diagram)
on a 200-step journey with comments, beside a plain re-check of the same text.

    .venv/bin/python -m bench.edit_bench
"""

from __future__ import annotations

import statistics
import time

from api.routes.check import check_text
from dsl.edits import EDIT, apply_edit


def journey_text(steps: int = 200) -> str:
    lines = ['journey "长旅程 bench"', "  entry event joined", "  reentry once", ""]
    for i in range(steps // 2):
        lines += [f"  # 第 {i} 步", f'  send sms "tpl_{i}"  # 短信', f"  wait {i + 1}m"]
    return "\n".join(lines) + "\n"


def _p(samples: list[float], q: float) -> float:
    return sorted(samples)[min(len(samples) - 1, int(q * len(samples)))] * 1000


def main(rounds: int = 100) -> None:
    source = journey_text()
    edit = EDIT.validate_python({"op": "replace_step", "node": "wait-50m", "text": "wait 2h"})
    edits: list[float] = []
    checks: list[float] = []
    for _ in range(rounds):
        t = time.perf_counter()
        result = apply_edit(source, edit)
        check_text(result.source, None, None, False)
        edits.append(time.perf_counter() - t)
        t = time.perf_counter()
        check_text(source, None, None, False)
        checks.append(time.perf_counter() - t)
    print(f"edit round trip: p50 {statistics.median(edits) * 1000:.1f} ms  p99 {_p(edits, 0.99):.1f} ms")
    print(f"plain re-check:  p50 {statistics.median(checks) * 1000:.1f} ms  p99 {_p(checks, 0.99):.1f} ms")


if __name__ == "__main__":
    main()
