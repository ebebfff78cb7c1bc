"""A simulation as the operator reads it: one line per thing that happened,
with the offset from the start and the user's local time, then how the run
ended, whether it converted, and the steps no case reached."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from runtime.simulate_model import CaseResult, SimulationResult
from runtime.simulate_read import offset_text

OFFSET_WIDTH = 9


def format_case(case: CaseResult) -> list[str]:
    tz = ZoneInfo(case.timezone)
    lines = [f"case {case.name!r}  user {case.user_id}  ({case.timezone})"]
    for entry in case.timeline:
        local = entry.at.astimezone(tz)
        when = f"{offset_text(entry.offset_seconds):<{OFFSET_WIDTH}} {local:%a %H:%M}"
        lines.append(f"  {when}  {entry.text}")
        if "body" in entry.detail:
            lines.append(" " * (len(when) + 6) + "“" + " ".join(str(entry.detail["body"]).split()) + "”")
    ending = case.ended + (f" ({case.end_reason})" if case.end_reason else "")
    lines.append(f"  ended: {ending}; {'converted' if case.converted else 'not converted'}")
    return lines


def format_result(result: SimulationResult) -> str:
    start = result.start
    lines = [
        f"journey {result.journey!r}  from {start.isoformat()} for {offset_text(int((result.horizon - start).total_seconds()))[1:]}"
    ]
    for case in result.cases:
        lines.append("")
        lines.extend(format_case(case))
    lines.append("")
    if result.never_reached:
        lines.append("never reached: " + ", ".join(result.never_reached))
    else:
        lines.append("every step was reached")
    return "\n".join(lines) + "\n"
