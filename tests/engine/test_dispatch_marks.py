"""The dispatcher's batched event marks: ``flush_marks`` returns only once
every mark made before it is committed, including the marks a background
flush already took and is still writing. The bounded-delivery test (and a
shutdown's drain) read the store right after a flush; when the batched
marker had taken the marks a moment earlier, the flush found nothing to do
and returned while that write was still under way."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from engine.dispatch import Dispatcher
from engine.journey_cache import JourneyCache
from engine.settings import Settings
from engine.store import Store


async def test_a_flush_waits_for_the_write_a_background_flush_has_under_way(store: Store, settings: Settings) -> None:
    dispatcher = Dispatcher(store, settings, JourneyCache(store))
    written: list[list[str]] = []
    started, release = threading.Event(), threading.Event()

    def slow_write(done: dict[str, dict[str, Any]], sent: list[int]) -> None:
        started.set()
        assert release.wait(30), "the test never let the write finish"
        written.append(sorted(done))

    dispatcher._write_marks = slow_write  # type: ignore[method-assign]
    dispatcher._dispatched["e1"] = {}
    background = asyncio.create_task(dispatcher.flush_marks())  # the batched marker's flush
    assert await asyncio.to_thread(started.wait, 30)

    dispatcher._dispatched["e2"] = {}  # a mark made while that write is under way
    flush = asyncio.create_task(dispatcher.flush_marks())
    await asyncio.sleep(0.05)  # room for a flush that does not wait to return
    assert not flush.done(), "flush_marks returned while marks it must cover were still being written"
    release.set()
    await asyncio.gather(background, flush)
    assert written == [["e1"], ["e2"]]
    assert not dispatcher._dispatched


async def test_a_flush_with_nothing_pending_and_nothing_being_written_returns(store: Store, settings: Settings) -> None:
    dispatcher = Dispatcher(store, settings, JourneyCache(store))
    calls: list[object] = []
    dispatcher._write_marks = lambda done, sent: calls.append((done, sent))  # type: ignore[method-assign]
    await dispatcher.flush_marks()
    assert calls == []
