"""Every kind of step is known to every registry that dispatches on it.

``dsl.ir.STEP_KINDS`` lists the classes of the ``Step`` union. Each layer
that does something per kind keeps a table keyed by the step class; this test
fails naming the registry and the kind it misses, so a new kind cannot be
half added (before the tables, five places fell back silently and the graph
could drop a new step's nested blocks). It also holds the kinds' static facts
(``blocks``, ``outcomes``) to what the graph does with them, and proves that
each table fails loudly when a kind is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from dsl import check, format_journey, parse
from dsl._analysis import TIMING
from dsl._builder import STEP_BUILDERS
from dsl._grammar import STEP_RULES
from dsl._step_rules import STEP_CHECKS
from dsl.diagram import COLORS, EDGE_LABELS, NODE_KINDS, build_diagram
from dsl.formatter import BLOCK_WRITERS, LINES
from dsl.graph import LINKS, build_graph
from dsl.ids import ID_PARTS, assign_ids
from dsl.ir import _BLOCKS, STEP_KINDS, Journey, iter_steps
from dsl.render import _MERMAID_SHAPES, to_mermaid
from dsl.render_svg import to_svg
from dsl.render_text import STEP_TEXT

EVERY_STEP = Path(__file__).parent / "dsl" / "ok" / "steps_all.journey"

# (registry, the step classes it covers), one row per table keyed by step class
REGISTRIES: list[tuple[str, Callable[[], Iterable[type]]]] = [
    ("grammar rules (dsl._grammar.STEP_RULES)", lambda: {r.kind for r in STEP_RULES}),
    (
        "tree builders (dsl._builder.STEP_BUILDERS)",
        lambda: {r.kind for r in STEP_RULES if r.rule in STEP_BUILDERS},
    ),
    ("nested blocks (dsl.ir._BLOCKS)", lambda: _BLOCKS),
    ("step ids (dsl.ids.ID_PARTS)", lambda: ID_PARTS),
    ("graph edges (dsl.graph.LINKS)", lambda: LINKS),
    ("formatter (dsl.formatter.LINES | BLOCK_WRITERS)", lambda: set(LINES) | set(BLOCK_WRITERS)),
    ("step words (dsl.render_text.STEP_TEXT)", lambda: STEP_TEXT),
    ("diagram node kinds (dsl.diagram.NODE_KINDS)", lambda: NODE_KINDS),
    (
        "diagram colours and Mermaid shapes (dsl.diagram.COLORS, dsl.render._MERMAID_SHAPES)",
        lambda: {cls for cls, kind in NODE_KINDS.items() if kind in COLORS and kind in _MERMAID_SHAPES},
    ),
    ("diagram edge labels (dsl.diagram.EDGE_LABELS)", lambda: EDGE_LABELS),
    ("checker rules (dsl._step_rules.STEP_CHECKS)", lambda: STEP_CHECKS),
    ("checker timing (dsl._analysis.TIMING)", lambda: TIMING),
    ("interpreter handlers (workflows.interpreter.STEP_HANDLERS)", lambda: _interpreter_handlers()),
    # a layer outside dsl/ with a table keyed by step class adds its row here
    # (the stats read each kind's ``waits`` and keep no table)
]


def _interpreter_handlers() -> Iterable[type]:
    from workflows.interpreter import STEP_HANDLERS  # imported here: the other rows need no Temporal

    return STEP_HANDLERS


def missing_kinds(covered: Iterable[type]) -> list[str]:
    """The names of the step kinds ``covered`` lacks, in the union's order."""
    known = set(covered)
    return [cls.__name__ for cls in STEP_KINDS if cls not in known]


@pytest.mark.parametrize("name, covered", REGISTRIES, ids=[name.split(" (")[0] for name, _ in REGISTRIES])
def test_registry_covers_every_step_kind(name: str, covered: Callable[[], Iterable[type]]) -> None:
    missing = missing_kinds(covered())
    assert not missing, f"{name} misses {', '.join(missing)}"


def test_a_registry_without_a_kind_is_reported() -> None:
    """The check above can fail: a table minus one kind is named."""
    kind = STEP_KINDS[len(STEP_KINDS) // 2]
    assert missing_kinds(k for k in ID_PARTS if k is not kind) == [kind.__name__]
    assert missing_kinds(()) == [k.__name__ for k in STEP_KINDS]


def _every_step() -> Journey:
    return parse(EVERY_STEP.read_text(encoding="utf-8"), EVERY_STEP.name)


def test_the_every_step_journey_has_every_kind() -> None:
    """The goldens, round trips and the tests below read this file, so a new
    kind must be written into it."""
    seen = {type(step) for step in iter_steps(_every_step().steps)}
    assert missing_kinds(seen) == []


def _matches(outcome: str, declared: tuple[str, ...]) -> bool:
    return any(outcome == d or (d.endswith("*") and outcome.startswith(d[:-1])) for d in declared)


def test_outcomes_and_blocks_are_what_the_graph_links() -> None:
    journey = _every_step()
    graph = build_graph(journey)
    for step in iter_steps(journey.steps):
        outcomes = [e.outcome for e in graph.edges[step.id]]
        assert outcomes and all(_matches(o, type(step).outcomes) for o in outcomes), (step.kind, outcomes)
        targets = {e.target for e in graph.edges[step.id]}
        for block in step.blocks():
            if block:  # a block's first step is where one of its edges goes
                assert block[0].id in targets, (step.kind, block[0].id)


# (registry, what runs through it): with the kind taken out, each must fail
# with an error naming it rather than fall back to something plausible
_USERS: dict[str, tuple[dict[type, Any], Callable[[Journey], object]]] = {
    "ids": (ID_PARTS, assign_ids),
    "graph": (LINKS, build_graph),
    "formatter": (LINES, format_journey),
    "words": (STEP_TEXT, build_diagram),
    "node kinds": (NODE_KINDS, to_mermaid),
    "edge labels": (EDGE_LABELS, to_svg),
    "checker rules": (STEP_CHECKS, check),
    "checker timing": (TIMING, lambda j: check(j, global_daily_limit=1)),
}


@pytest.mark.parametrize("registry, use", _USERS.values(), ids=_USERS.keys())
def test_a_missing_kind_fails_loudly(
    registry: dict[type, Any], use: Callable[[Journey], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    journey = _every_step()
    kind = next(cls for cls in STEP_KINDS if cls.__name__ == "WaitEventTimeStep")
    monkeypatch.delitem(registry, kind)
    with pytest.raises(TypeError, match="wait_event_time"):
        use(journey)
