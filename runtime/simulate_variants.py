"""Forced split variants in a simulation: which split a case names (its step
id, ``split-A-B``, or the name of a ``label`` right before it), checked
against the journey before anything starts; the matrix that walks every
variant of every split; and the client interceptor that stamps a case's
choices on the runs the engine starts for it.

The interpreter draws a split's variant with ``workflow.random()``, which a
test cannot seed, so without forcing an operator could only expect what
holds for every variant. ``JourneyInput.forced_variants`` (step id →
variant) makes the split take the named one. A case's run is started by
``engine.dispatch``/``engine.starts`` exactly as in production (the entry's
``where`` decides), which build the input themselves; rather than teaching
production code about simulations, the case's Temporal client adds the
forced variants to every journey run it starts, so they are in the run's
history like any other input and survive continue-as-new.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from temporalio.client import Client, Interceptor, OutboundInterceptor, StartWorkflowInput, WorkflowHandle

from contracts.runs import JourneyInput
from dsl.ir import Journey, LabelStep, SplitStep, Step
from runtime.simulate_model import Case

MATRIX_SEPARATOR = " · "


def _blocks(steps: list[Step]) -> Iterator[list[Step]]:
    yield steps
    for step in steps:
        for block in step.blocks():
            yield from _blocks(block)


def splits(ir: Journey) -> dict[str, SplitStep]:
    """Every name a split answers to: its step id, and the name of a label
    written right before it (``label guides`` then ``split:``), which stays
    put when a variant is renamed and the id changes with it."""
    found: dict[str, SplitStep] = {}
    for block in _blocks(ir.steps):
        for index, step in enumerate(block):
            if isinstance(step, SplitStep):
                found[step.id] = step
                before = block[index - 1] if index else None
                if isinstance(before, LabelStep):
                    found.setdefault(before.name, step)
    return found


def resolve_variants(ir: Journey, forced: Mapping[str, str]) -> dict[str, str]:
    """``forced`` (split id or label → variant name) as step id → variant,
    or ``ValueError`` naming the unknown split or variant and what there is:
    a typo must be refused before the run, not send the run down a random
    branch."""
    by_name = splits(ir)
    resolved: dict[str, str] = {}
    for key, variant in forced.items():
        step = by_name.get(key)
        if step is None:
            known = ", ".join({s.id: s for s in by_name.values()}) or "none"
            raise ValueError(f"variants: no split {key!r} in the journey (its splits: {known})")
        names = [v.name for v in step.variants]
        if variant not in names:
            raise ValueError(f"variants: split {key!r} has no variant {variant!r} (it has {', '.join(names)})")
        if resolved.get(step.id, variant) != variant:
            raise ValueError(f"variants: split {step.id!r} is forced to both {resolved[step.id]!r} and {variant!r}")
        resolved[step.id] = variant
    return resolved


def variant_matrix(ir: Journey, cases: Sequence[Case]) -> list[Case]:
    """Each case once per variant of its journey's splits: the k-th copy
    forces variant k (the last when a split has fewer) of every split the
    case does not force itself, so every variant of every split is walked
    with as many copies as the widest split has variants, and every copy is
    deterministic. (Every *combination* would multiply the splits' sizes,
    and ``MAX_CASES`` with it.) A journey without splits leaves the cases
    as they are."""
    steps = list({s.id: s for s in splits(ir).values()}.values())
    out: list[Case] = []
    for case in cases:
        own = resolve_variants(ir, case.variants)
        free = [s for s in steps if s.id not in own]
        width = max((len(s.variants) for s in free), default=0)
        if not width:
            out.append(case)
            continue
        for k in range(width):
            chosen = {s.id: s.variants[min(k, len(s.variants) - 1)].name for s in free}
            words = ", ".join(f"{step} {variant}" for step, variant in chosen.items())
            out.append(case.model_copy(update={"name": case.name + MATRIX_SEPARATOR + words, "variants": own | chosen}))
    return out


class _ForceVariants(OutboundInterceptor):
    def __init__(self, next: OutboundInterceptor, forced: dict[str, str]) -> None:
        super().__init__(next)
        self.forced = forced

    async def start_workflow(self, input: StartWorkflowInput) -> WorkflowHandle[Any, Any]:
        input.args = [
            arg.model_copy(update={"forced_variants": {**arg.forced_variants, **self.forced}})
            if isinstance(arg, JourneyInput)
            else arg
            for arg in input.args
        ]
        return await super().start_workflow(input)


class ForceVariants(Interceptor):
    """Adds ``forced`` to the input of every journey run the client starts."""

    def __init__(self, forced: dict[str, str]) -> None:
        self.forced = dict(forced)

    def intercept_client(self, next: OutboundInterceptor) -> OutboundInterceptor:
        return _ForceVariants(next, self.forced)


def forcing_client(client: Client, forced: dict[str, str]) -> Client:
    """``client`` itself when nothing is forced; else a client on the same
    connection whose journey starts carry ``forced``."""
    if not forced:
        return client
    config = client.config()
    config["interceptors"] = [*config["interceptors"], ForceVariants(forced)]
    return Client(**config)
