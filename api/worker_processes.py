"""Worker (and API) processes that ``journeys up`` starts, watches and stops.

Why processes: the API and the worker are both busy Python event loops, and in
one process they take turns on one interpreter lock; in two they use two
cores. Each child is ``journeys worker --settings-stdin`` (or, with
``--api-processes``, ``journeys api --settings-stdin``): it gets the parent's
exact settings (outbox path, vendor secrets, keys, caps) as one JSON line on
its standard input, so nothing secret lands on disk or in ``ps``.

Each child gets SIGTERM from the kernel when ``up`` dies, even by ``kill -9``
(``api.child_guard.die_with_parent_hook``), and leads its own process group,
which ``stop`` kills whole: no worker outlives ``up`` with stale settings.

A worker that dies unexpectedly is started again (after 1 s, doubling up to
30 s while it keeps dying): Temporal re-delivers whatever it held, and the
ledger's idempotency keys keep sends and coupons exactly-once. An API process
likewise: what it had stored but not delivered is the sweep's
(``engine.dispatch``), and its siblings answer on the shared port meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from api.child_guard import die_with_parent_hook

log = logging.getLogger("journeys.up")

ROOT = Path(__file__).resolve().parent.parent
STOP_GRACE_SECONDS = 30.0


def _child_env() -> dict[str, str]:
    """Our environment, plus this checkout on the import path (the child runs
    in our working directory, so relative data paths mean the same)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


class WorkerProcesses:
    """``count`` supervised ``journeys <command>`` children (``worker`` by default)."""

    def __init__(
        self,
        count: int,
        settings_json: str,
        *,
        log_level: str = "INFO",
        on_spawn: Callable[[int], None] | None = None,
        command: Sequence[str] = ("worker",),
        what: str = "worker process",
    ) -> None:
        self.count = count
        self._command = list(command)  # the subcommand and its own options
        self.what = what  # in log lines: "worker process 0 started (pid …)"
        self._on_spawn = on_spawn  # told each new child's pid (``journeys up``'s guard)
        self._settings = settings_json
        self._log_level = log_level
        self._procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs if p is not None and p.returncode is None]

    async def start(self) -> None:
        for slot in range(self.count):
            await self._spawn(slot)
            self._tasks.append(asyncio.create_task(self._watch(slot), name=f"worker-{slot}"))

    async def _spawn(self, slot: int) -> None:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "api.cli",
            *self._command,
            "--settings-stdin",
            "--log-level",
            self._log_level,
            stdin=asyncio.subprocess.PIPE,
            env=_child_env(),
            preexec_fn=die_with_parent_hook(new_group=True),
        )
        assert proc.stdin is not None
        proc.stdin.write(self._settings.encode() + b"\n")
        await proc.stdin.drain()
        proc.stdin.close()
        self._procs[slot] = proc
        if self._on_spawn is not None:
            self._on_spawn(proc.pid)
        log.info("%s %d started (pid %d)", self.what, slot, proc.pid)

    async def _watch(self, slot: int) -> None:
        backoff = 1.0
        while True:
            proc = self._procs[slot]
            assert proc is not None
            code = await proc.wait()
            if self._stopping:
                return
            log.error(
                "%s %d (pid %d) exited with %s; starting it again in %.0f s", self.what, slot, proc.pid, code, backoff
            )
            await asyncio.sleep(backoff)
            if self._stopping:
                return
            backoff = min(backoff * 2, 30.0)
            await self._spawn(slot)

    async def stop(self) -> None:
        """SIGTERM every child (each finishes its in-flight activities), then
        SIGKILL what is still there after the grace period."""
        self._stopping = True
        live = [p for p in self._procs if p is not None and p.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in live)), STOP_GRACE_SECONDS)
        except TimeoutError:
            for proc in live:
                if proc.returncode is None:
                    log.warning("%s pid %d did not stop in time; killing it", self.what, proc.pid)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
            await asyncio.gather(*(p.wait() for p in live))
        for proc in live:  # whatever a worker started itself goes with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
