"""``JourneyWorkflow``: one durable run of a journey for one user.

Only the entry points live here. Temporal's sandbox re-imports and recompiles
this file for every new run, so the interpreter itself
(``workflows.interpreter``) is imported passed-through and loaded once per
worker; the run's behaviour is all there.
"""

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.interpreter import JourneyInterpreter
    from workflows.models import JourneyInput, RunStatus, UserEvent


@workflow.defn(name="JourneyWorkflow")
class JourneyWorkflow:
    @workflow.init
    def __init__(self, inp: JourneyInput) -> None:
        self._run = JourneyInterpreter(inp)

    @workflow.signal(name="event")
    def on_event(self, event: UserEvent) -> None:
        """A user event, de-duplicated by its id within the run."""
        self._run.on_event(event)

    @workflow.query(name="status")
    def status(self) -> RunStatus:
        return self._run.status()

    @workflow.run
    async def run(self, inp: JourneyInput) -> str:
        return await self._run.run()
