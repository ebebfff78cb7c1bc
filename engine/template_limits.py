"""The bounds every template render runs under: output size, ``**``/``*``/
``%`` and the string methods and filters that grow text, ``range``, and
time (``LimitedEnvironment``, ``render_limited``). Over a limit is a
``TemplateLimitError``, a ``TemplateRenderError`` like any other (see
``engine.templates`` for what a send and a preview do with it). Kept apart
from storage and contexts: this is the sandbox, and it is the part a
security review reads.
"""

from __future__ import annotations

import functools
import operator
import re
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Any

from jinja2 import Template as JinjaTemplate
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.filters import FILTERS as DEFAULT_FILTERS
from jinja2.runtime import Context
from jinja2.sandbox import SandboxedEnvironment


class TemplateRenderError(Exception):
    """Rendering failed; ``str(exc)`` is the reason recorded on the delivery."""


# ---------------------------------------------------------------- limits
#
# An operator's template runs in the worker and in the API process, so it
# must not be able to take either down. Before these limits (issue 13):
# ``{{ 'a'*10**9 }}`` returned 1 GB after 18 s (peak 4.1 GB, /health stalled
# 12 s); a power with a huge exponent never returned (jinja reads ``**`` left
# to right, so the one that hangs is ``9**(9**9)``); nested loops ran 10 s and
# more. Each limit below is checked *before* the work it bounds, except the
# clock, which stops whatever slipped through.

MAX_OUTPUT_CHARS = 65_536
"""The longest rendered body or subject (64 k characters): far above what any
channel delivers (an email is the longest), far below what hurts a worker."""

MAX_EXPONENT = 100
"""``a ** b`` with an integer ``b`` over this is refused before computing."""

MAX_INT_BITS = 4_096
"""An integer result of ``**`` or ``*`` may have at most this many bits
(1,233 decimal digits): no message needs more, and each step of a bigger one
costs more than the last."""

MAX_RANGE = 10_000
"""``range()`` in a template yields at most this many numbers (jinja's own
sandbox allows 100,000)."""

RENDER_SECONDS = 0.2
"""A render running longer than this is stopped. Real templates render in
well under a millisecond."""


class TemplateLimitError(TemplateRenderError):
    """A template went over one of the limits above; the message says which,
    in the operator's words."""


class _Budget:
    """The clock of one render, shared by everything the render calls in its
    thread."""

    __slots__ = ("deadline",)

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.deadline:
            raise TemplateLimitError(f"the template ran longer than {int(RENDER_SECONDS * 1000)} ms")


_current = threading.local()


def _budget() -> _Budget | None:
    return getattr(_current, "budget", None)


def _tick() -> None:
    budget = _budget()
    if budget is not None:
        budget.check()


def _too_long(length: int, what: str) -> None:
    if length > MAX_OUTPUT_CHARS:
        raise TemplateLimitError(f"{what} would make {length:,} characters or items, over {MAX_OUTPUT_CHARS:,}")


def _bounded_pow(base: Any, exponent: Any) -> Any:
    if isinstance(base, int) and isinstance(exponent, int) and not isinstance(exponent, bool):
        if exponent > MAX_EXPONENT:
            raise TemplateLimitError(f"`**` with an exponent over {MAX_EXPONENT} ({exponent})")
        if exponent > 0 and abs(base) > 1 and (abs(base).bit_length() - 1) * exponent > MAX_INT_BITS:
            raise TemplateLimitError(f"`{base} ** {exponent}` is a number over {MAX_INT_BITS} bits")
    return operator.pow(base, exponent)


def _bounded_mul(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(count, int):
            _too_long(len(seq) * max(count, 0), "`*`")
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(f"`*` makes a number over {MAX_INT_BITS} bits")
    return operator.mul(left, right)


# ``%d``/``%s`` with a width or precision, and ``{:>10}``: the numbers that
# make ``'%999999999d' % 1`` or ``'{:999999999}'.format(1)`` a gigabyte.
_PERCENT_WIDTHS = re.compile(r"%[#0\- +]*(\d*)(?:\.(\d+))?[a-zA-Z%]")
_FORMAT_WIDTHS = re.compile(r"\{[^{}]*:[^{}\d]*(\d+)(?:\.(\d+))?[^{}]*\}")


def _widths(pattern: re.Pattern[str], text: str) -> None:
    for match in pattern.finditer(text):
        for number in match.groups():
            if number and (len(number) > 6 or int(number) > MAX_OUTPUT_CHARS):
                raise TemplateLimitError(f"a width of {number} in {match.group(0)!r}, over {MAX_OUTPUT_CHARS:,}")


def _bounded_mod(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _widths(_PERCENT_WIDTHS, left)
    return operator.mod(left, right)


def _int_arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str) -> int:
    value = args[index] if len(args) > index else kwargs.get(name, 0)
    return value if isinstance(value, int) else 0


def _check_str_call(text: str, method: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """The string methods whose result can be much longer than their input,
    sized before they run (``'a'.ljust(10**9)``)."""
    if method in ("ljust", "rjust", "center", "zfill"):
        _too_long(_int_arg(args, kwargs, 0, "width"), f"`{method}`")
    elif method == "expandtabs":
        _too_long(len(text) * max(_int_arg(args, kwargs, 0, "tabsize"), 1), "`expandtabs`")
    elif method == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        _too_long(len(text) + (text.count(args[0]) + 1) * len(args[1]), "`replace`")
    elif method == "join" and args:
        _too_long(len(text) * max(len(args[0]) if hasattr(args[0], "__len__") else 0, 0), "`join`")


def _bounded_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise TemplateLimitError(f"`range` of {len(numbers):,} numbers, over {MAX_RANGE:,}")
    return numbers


def _sized_filter(name: str, size: Callable[..., int]) -> Callable[..., Any]:
    """A builtin filter that refuses, before running, a result over the cap."""
    original = DEFAULT_FILTERS[name]
    skip = 1 if hasattr(original, "jinja_pass_arg") else 0  # its eval context comes first

    def bounded(*args: Any, **kwargs: Any) -> Any:
        _too_long(size(*args[skip:], **kwargs), f"the `{name}` filter")
        return original(*args, **kwargs)

    return functools.update_wrapper(bounded, original)


def _len(value: Any) -> int:
    return len(value) if hasattr(value, "__len__") else len(str(value))


def _format_filter_size(value: Any, *args: Any, **kwargs: Any) -> int:
    _widths(_PERCENT_WIDTHS, str(value))
    return 0


_BOUNDED_FILTERS: dict[str, Callable[..., int]] = {
    "center": lambda value, width=80: _len(value) + (width if isinstance(width, int) else 0),
    "indent": lambda value, width=4, *a, **k: _len(value) * (1 + (width if isinstance(width, int) else _len(width))),
    "join": lambda value, d="", attribute=None: _len(d) * (_len(value) if hasattr(value, "__len__") else 0),
    "replace": lambda s, old, new, count=None: _len(s) + (_len(s) + 1) * _len(new),
    "format": _format_filter_size,
}


def _line_tracer(frame: FrameType, event: str, arg: Any) -> Any:
    if event == "line":
        _tick()
    return _line_tracer


def _template_tracer(frame: FrameType, event: str, arg: Any) -> Any:
    """Traces the lines of compiled templates only (their code's file is
    ``<template>``), so a loop with an empty body is stopped on time too."""
    return _line_tracer if frame.f_code.co_filename == "<template>" else None


def _sized_concat(join: Callable[[Any], str], values: tuple[Any, ...]) -> str:
    """``a ~ b ~ c``, sized before it is joined: each part may be under the
    cap and a few thousand of them a gigabyte."""
    _too_long(sum(len(str(v)) for v in values), "`~`")
    return join(values)


class _SizedConcatGenerator(CodeGenerator):
    """Compiles ``~`` to ``_sized_concat`` (jinja has no hook for it: the
    compiler writes a bare ``str_join``)."""

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        if frame.eval_ctx.volatile:
            join = "(markup_join if context.eval_ctx.volatile else str_join)"
        else:
            join = "markup_join" if frame.eval_ctx.autoescape else "str_join"
        self.write(f"environment.sized_concat({join}, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class LimitedEnvironment(SandboxedEnvironment):
    """jinja's sandbox with the limits above: ``**``, ``*`` and ``%`` sized
    before they compute (intercepted operators are also never folded at
    compile time, so ``{{ 9**9**9 }}`` cannot hang the compiler), the growing
    string methods and filters and ``~`` sized, a smaller ``range``, no ``lipsum``, and
    the clock checked on every call, attribute and template line."""

    intercepted_binops = frozenset({"**", "*", "%"})
    code_generator_class = _SizedConcatGenerator
    sized_concat = staticmethod(_sized_concat)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.globals["range"] = _bounded_range
        self.globals.pop("lipsum", None)
        self.binop_table.update({"**": _bounded_pow, "*": _bounded_mul, "%": _bounded_mod})
        for name, size in _BOUNDED_FILTERS.items():
            self.filters[name] = _sized_filter(name, size)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        return self.binop_table[operator](left, right)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        if isinstance(obj, str) and attribute in ("format", "format_map"):  # the sandbox wraps these
            _widths(_FORMAT_WIDTHS, obj)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            _check_str_call(owner, getattr(__obj, "__name__", ""), args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def render_limited(template: JinjaTemplate, context: Mapping[str, Any]) -> str:
    """Render under the clock, streaming, and stop at the output cap. The
    clock also runs on every line of the compiled template (``sys.settrace``
    for this thread, only while rendering; the thread's previous tracer — a
    debugger's, coverage's — is put back after, and misses the render)."""
    budget = _Budget(RENDER_SECONDS)
    outer, _current.budget = _budget(), budget
    previous = sys.gettrace()
    sys.settrace(_template_tracer)
    try:
        parts: list[str] = []
        length = 0
        for chunk in template.generate(**context):
            length += len(chunk)
            if length > MAX_OUTPUT_CHARS:
                raise TemplateLimitError(f"the template's output is over {MAX_OUTPUT_CHARS // 1024} kB")
            parts.append(chunk)
            budget.check()
        return "".join(parts)
    finally:
        sys.settrace(previous)
        _current.budget = outer
