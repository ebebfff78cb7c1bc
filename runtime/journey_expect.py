"""Expectations of a journey test, one line of words each, checked against a
simulated case (``runtime.simulate_model.CaseResult``).

The words (``CHANNEL`` as in the language: wecom, sms, push…; ``DURATION``
as ``1m``, ``1d2h``; ``NODE`` a step id as ``journeys simulate`` prints it
in ``--json`` and in "never reached", e.g. ``wait-event-order_paid-2``)::

    sends CHANNEL TEMPLATE [within|after DURATION]   a message went out (within, or no
                                               sooner than, DURATION after the start)
    sends any TEMPLATE [within|after DURATION] on whichever channel
    does not send TEMPLATE                     no message of that template went out
    suppresses TEMPLATE [because TEXT]         a send of it was held back (reason contains TEXT)
    no CHANNEL                                 nothing went out on that channel
    no messages                                nothing went out at all
    at most N messages in any DURATION         sent messages in every window of that length
    coupon POOL issued | coupon POOL out of stock | no coupon POOL
    takes OUTCOME at NODE                      OUTCOME: on event, on timeout, yes, no, else,
                                               branch N (1 = the first), variant NAME
    reaches NODE | never reaches NODE
    converts | does not convert
    ends completed|exited|converted|refused|running|not entered
    is not in the audience [because TEXT]     an audience entry did not select the user at the
                                               start (the reason, e.g. "reachable on SMS: no", contains TEXT)
    exits with reason TEXT                     exited, the reason contains TEXT
    still waiting at NODE                      the run is still going at the horizon, waiting there
    has tag TAG | has no tag TAG
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from dsl.ir import CHANNELS
from runtime.simulate_model import NOT_SELECTED, CaseResult, Message, parse_span
from runtime.simulate_read import offset_text

Check = Callable[[CaseResult], str | None]  # None: met; else what was found instead

ENDINGS = ("completed", "exited", "converted", "refused", "running", "not entered", "cancelled")


class ExpectationError(ValueError):
    """An expectation whose words are not understood."""


@dataclass(frozen=True)
class Expectation:
    text: str
    check: Check


def _sent(result: CaseResult) -> list[Message]:
    return [m for m in result.messages if m.status == "sent"]


Window = tuple[timedelta | None, timedelta | None]  # (not before, not after) the start + …


def _when(how: str | None, span: str | None) -> Window:
    if how is None or span is None:
        return (None, None)
    return (None, _span(span)) if how == "within" else (_span(span), None)


def _sends(channel: str | None, template: str, window: Window) -> Check:
    earliest, latest = window

    def check(result: CaseResult) -> str | None:
        sent = _sent(result)
        for m in sent:
            offset = m.at - result.start
            on_time = (earliest is None or offset >= earliest) and (latest is None or offset <= latest)
            if m.template == template and (channel is None or m.channel == channel) and on_time:
                return None
        return "sent: " + _describe(sent, result)

    return check


def _describe(messages: list[Message], result: CaseResult) -> str:
    if not messages:
        return "nothing"
    return ", ".join(
        f"{m.channel} {m.template} at {offset_text(int((m.at - result.start).total_seconds()))}" for m in messages
    )


def _not_sends(template: str) -> Check:
    def check(result: CaseResult) -> str | None:
        hits = [m for m in _sent(result) if m.template == template]
        return f"sent: {_describe(hits, result)}" if hits else None

    return check


def _suppresses(template: str, because: str | None) -> Check:
    def check(result: CaseResult) -> str | None:
        held = [m for m in result.messages if m.template == template and m.status == "suppressed"]
        if any(because is None or because in (m.reason or "") for m in held):
            return None
        sends = [m for m in result.messages if m.template == template]
        return "sends of it: " + (", ".join(f"{m.status} ({m.reason})" for m in sends) or "none")

    return check


def _no_channel(channel: str | None) -> Check:
    def check(result: CaseResult) -> str | None:
        hits = [m for m in _sent(result) if channel is None or m.channel == channel]
        return f"sent: {_describe(hits, result)}" if hits else None

    return check


def _at_most(count: int, window: timedelta) -> Check:
    def check(result: CaseResult) -> str | None:
        times = sorted(m.at for m in _sent(result))
        for i, first in enumerate(times):
            inside = [t for t in times[i:] if t - first < window]
            if len(inside) > count:
                return f"{len(inside)} messages from {_describe([m for m in _sent(result) if m.at in inside], result)}"
        return None

    return check


def _coupon(pool: str, status: str) -> Check:
    def check(result: CaseResult) -> str | None:
        issued = bool(result.coupons.get(pool))
        if status == "issued":
            return None if issued else f"coupon {pool} not issued ({_coupon_outcomes(result, pool)})"
        if status == "none":
            return f"coupon {pool} issued" if issued else None
        outcomes = _coupon_outcomes(result, pool)
        return None if "out_of_stock" in outcomes else f"coupon {pool}: {outcomes}"

    return check


def _coupon_outcomes(result: CaseResult, pool: str) -> str:
    node = f"coupon-{pool}"
    found = [o for n, os in result.outcomes.items() if n == node or n.startswith(node + "-") for o in os]
    return ", ".join(found) or "never reached"


def _takes(outcome: str, node: str) -> Check:
    def check(result: CaseResult) -> str | None:
        taken = result.outcomes.get(node, [])
        return None if outcome in taken else f"{node} took: {', '.join(taken) or 'nothing (never passed)'}"

    return check


def _reaches(node: str, wanted: bool) -> Check:
    def check(result: CaseResult) -> str | None:
        count = result.visits.get(node, 0)
        if wanted:
            return None if count else f"{node} never reached"
        return f"{node} reached {count} time(s)" if count else None

    return check


def _converts(wanted: bool) -> Check:
    def check(result: CaseResult) -> str | None:
        return None if result.converted == wanted else ("converted" if result.converted else "did not convert")

    return check


def _ending(result: CaseResult) -> str:
    return result.ended + (f" ({result.end_reason})" if result.end_reason else "")


def _ends(outcome: str) -> Check:
    return lambda result: None if result.ended == outcome else f"ended: {_ending(result)}"


def _exits_because(reason: str) -> Check:
    def check(result: CaseResult) -> str | None:
        met = result.ended == "exited" and reason in (result.end_reason or "")
        return None if met else f"ended: {_ending(result)}"

    return check


# The reason shows a comparison as the console does (``≥``); the words may
# have it as the language writes it.
_AS_SHOWN = (("==", "="), (">=", "≥"), ("<=", "≤"), ("!=", "≠"))


def _not_selected(words: str | None) -> Check:
    wanted = (words or "").lower()
    for typed, shown in _AS_SHOWN:
        wanted = wanted.replace(typed, shown)

    def check(result: CaseResult) -> str | None:
        reason = result.end_reason or ""
        met = result.ended == "not entered" and reason.startswith(NOT_SELECTED) and wanted in reason.lower()
        return None if met else f"ended: {_ending(result)}"

    return check


def _waiting_at(node: str) -> Check:
    return lambda result: None if result.waiting_at == node else f"ended: {_ending(result)}"


def _tag(tag: str, wanted: bool) -> Check:
    def check(result: CaseResult) -> str | None:
        has = tag in result.tags
        return None if has == wanted else f"tags: {', '.join(result.tags) or 'none'}"

    return check


def _outcome_of(words: str) -> str:
    words = words.strip()
    fixed = {"on event": "event", "on timeout": "timeout", "yes": "branch:0", "no": "else", "else": "else"}
    if words in fixed:
        return fixed[words]
    branch = re.fullmatch(r"branch (\d+)", words)
    if branch and int(branch.group(1)) >= 1:
        return f"branch:{int(branch.group(1)) - 1}"
    variant = re.fullmatch(r"variant (\S+)", words)
    if variant:
        return f"variant:{variant.group(1)}"
    raise ExpectationError(f"unknown outcome {words!r} (on event, on timeout, yes, no, else, branch N, variant NAME)")


def _channel(word: str) -> str:
    if word not in CHANNELS:
        raise ExpectationError(f"unknown channel {word!r} (one of {', '.join(CHANNELS)})")
    return word


def _span(word: str) -> timedelta:
    try:
        return parse_span(word)
    except ValueError as exc:
        raise ExpectationError(str(exc)) from None


_RULES: list[tuple[re.Pattern[str], Callable[..., Check]]] = [
    (re.compile(r"sends any (\S+)(?: (within|after) (\S+))?"), lambda t, h, w: _sends(None, t, _when(h, w))),
    (
        re.compile(r"sends (\S+) (\S+)(?: (within|after) (\S+))?"),
        lambda c, t, h, w: _sends(_channel(c), t, _when(h, w)),
    ),
    (re.compile(r"does not send (\S+)"), _not_sends),
    (re.compile(r"suppresses (\S+)(?: because (.+))?"), _suppresses),
    (re.compile(r"no messages"), lambda: _no_channel(None)),
    (re.compile(r"no coupon (\S+)"), lambda p: _coupon(p, "none")),
    (re.compile(r"no (\S+)"), lambda c: _no_channel(_channel(c))),
    (re.compile(r"at most (\d+) messages? in any (\S+)"), lambda n, w: _at_most(int(n), _span(w))),
    (re.compile(r"coupon (\S+) issued"), lambda p: _coupon(p, "issued")),
    (re.compile(r"coupon (\S+) out of stock"), lambda p: _coupon(p, "out_of_stock")),
    (re.compile(r"takes (.+) at (\S+)"), lambda o, n: _takes(_outcome_of(o), n)),
    (re.compile(r"never reaches (\S+)"), lambda n: _reaches(n, False)),
    (re.compile(r"reaches (\S+)"), lambda n: _reaches(n, True)),
    (re.compile(r"does not convert"), lambda: _converts(False)),
    (re.compile(r"converts"), lambda: _converts(True)),
    (re.compile(r"exits with reason (.+)"), _exits_because),
    (re.compile(r"is not in the audience(?: because (.+))?"), _not_selected),
    (re.compile(r"ends (.+)"), lambda o: _ends(_known_ending(o))),
    (re.compile(r"still waiting at (\S+)"), _waiting_at),
    (re.compile(r"has no tag (\S+)"), lambda t: _tag(t, False)),
    (re.compile(r"has tag (\S+)"), lambda t: _tag(t, True)),
]


def _known_ending(word: str) -> str:
    if word not in ENDINGS:
        raise ExpectationError(f"unknown ending {word!r} (one of {', '.join(ENDINGS)})")
    return word


def parse_expectation(text: str) -> Expectation:
    """One line of words → its check; ``ExpectationError`` names what is not understood."""
    words = " ".join(text.split())
    for pattern, build in _RULES:
        match = pattern.fullmatch(words)
        if match:
            return Expectation(words, build(*match.groups()))
    raise ExpectationError(f"not an expectation: {text!r} (see runtime/journey_expect.py for the words)")
