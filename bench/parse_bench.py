"""Time parse + check on big generated journeys, against the targets.

Targets: a 1,000-step journey in under 150 ms, a 10,000-line file in under 1 s
(parse + check, grammar already loaded). Prints the median of several runs (the
verdict) and the fastest (what the code costs when nothing else runs on the
machine); asserts nothing. The grammar load is timed from a cold start: with
the grammar cache (see ``dsl._grammar.cache_file``) it is a few tens of ms.

    .venv/bin/python bench/parse_bench.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dsl import check, parse  # noqa: E402
from dsl.ir import iter_steps  # noqa: E402

HEADER = """journey "bench"
  description "生成的基准旅程"
  entry event joined_group where channel == "wecom_group"
  reentry after 30d
  goal event order_paid within 14d
  exit when event unsubscribed
  quiet hours 22:00-08:00
  limit 3 messages per 1d

"""


def _chunk(i: int) -> list[str]:
    """Eleven steps (14 lines) exercising most of the language."""
    return [
        f'  send wecom "welcome_{i}"   # 欢迎 {i}',
        f"  wait {i % 5 + 1}h",
        f'  if tag visited_{i} and not tag ordered or user.city == "上海":',
        f'    send best of wecom, push, sms "reminder_{i}"',
        "  else:",
        f"    tag add cold_{i}",
        f"  wait for event order_paid up to {i % 3 + 1}d:",
        "    on event:",
        f'      coupon "second_{i}"',
        "    on timeout:",
        "      split:",
        f'        50% A: send sms "nudge_a_{i}"',
        "        50% B: pass",
        f"  wait until {i % 24:02d}:30",
    ]


def journey_with_steps(steps: int) -> str:
    lines: list[str] = []
    i = 0
    while True:
        chunk = _chunk(i)
        lines.extend(chunk)
        i += 1
        if i * 11 >= steps:
            break
    return HEADER + "\n".join(lines) + "\n"


def journey_with_lines(total: int) -> str:
    lines: list[str] = HEADER.splitlines()
    i = 0
    while len(lines) < total:
        lines.extend(_chunk(i))
        i += 1
    return "\n".join(lines[:total]).rsplit("\n  send", 1)[0] + "\n"


def _time(source: str, repeat: int) -> tuple[float, float, int]:
    times = []
    count = 0
    for _ in range(repeat):
        start = time.perf_counter()
        journey = parse(source, "bench.journey")
        check(journey, source, "bench.journey", global_daily_limit=5)
        times.append(time.perf_counter() - start)
        count = sum(1 for _ in iter_steps(journey.steps))
    return statistics.median(times), min(times), count


def main() -> int:
    start = time.perf_counter()
    parse(journey_with_steps(10))  # load the grammar once
    print(f"grammar load + first parse: {(time.perf_counter() - start) * 1000:.0f} ms")
    for src, repeat, target in ((journey_with_steps(1000), 11, 0.150), (journey_with_lines(10_000), 5, 1.0)):
        t, fastest, steps = _time(src, repeat)
        verdict = "ok" if t < target else "SLOW"
        print(
            f"{steps:>6} steps, {src.count(chr(10)):>6} lines: parse+check median {t * 1000:7.1f} ms,"
            f" fastest {fastest * 1000:7.1f} ms  (target {target * 1000:.0f} ms) {verdict}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
