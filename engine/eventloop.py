"""Running a long-lived process's asyncio loop, on uvloop when it is installed.

The API and the worker are event-loop-bound (HTTP parsing, Temporal's
activations, thread hand-offs); uvloop runs the same asyncio programs with a
loop written in C. It is an optional speed-up: without it (or with
``JOURNEYS_UVLOOP=0``) the standard loop runs everything unchanged.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Any:
    if os.environ.get("JOURNEYS_UVLOOP", "1") == "0":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
