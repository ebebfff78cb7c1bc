"""``JourneyWorkflow``: one durable run of a journey for one user.

Only the entry points live here; the run's behaviour is all in
``workflows.interpreter``.

It runs outside Temporal's sandbox (``sandboxed=False``). The sandbox guards
only the modules it re-imports for every run, and the interpreter has always
been imported passed-through (re-importing it per run cost more than the run),
so the sandbox checked nothing of ours while it cost about a third of the
worker's CPU per event (creating the per-run module namespace, and running
every payload's serialization context through it; ``bench/latency_bench.py``).
Determinism is guarded instead by ``tests/workflows/test_determinism.py`` (no
clock, randomness or I/O in the workflow modules, checked on their source)
and by replaying committed histories (``test_replay``). The imports stay
passed-through so a sandboxed worker would still run this file unchanged.
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts import names
    from contracts.runs import JourneyInput, MergedNotice, RunStatus, UserEvent
    from workflows.interpreter import JourneyInterpreter


@workflow.defn(name=names.JOURNEY_WORKFLOW, sandboxed=False)
class JourneyWorkflow:
    @workflow.init
    def __init__(self, inp: JourneyInput) -> None:
        self._run = JourneyInterpreter(inp)

    @workflow.signal(name=names.EVENT_SIGNAL)
    def on_event(self, event: UserEvent) -> None:
        """A user event (or a tag change), de-duplicated by its id within the run."""
        self._run.on_event(event)

    @workflow.signal(name=names.MERGED_SIGNAL)
    def on_merged(self, notice: MergedNotice) -> None:
        """The user was merged with a person whose run of this journey is kept: end as ``merged``."""
        self._run.on_merged(notice)

    @workflow.query(name="status")
    def status(self) -> RunStatus:
        return self._run.status()

    @workflow.run
    async def run(self, inp: JourneyInput) -> str:
        return await self._run.run()
