"""``journeys up --demo``: the example journeys deployed, with message copy and
coupon pools to match, so an operator can try everything on a fresh machine.

Copy comes from ``journeys/demo_seed.toml`` where written; any other template
an example names gets a plain placeholder text, so every example can run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from dsl import load
from dsl.errors import JourneyError
from dsl.ir import CouponStep, Journey, SendStep, iter_steps
from engine import catalog, coupons, templates
from engine.seed import load_seed_file
from engine.store import Store

log = logging.getLogger("journeys.demo")

EXAMPLES = Path(__file__).resolve().parent.parent / "journeys"
DEMO_STOCK = 1000


@dataclass
class DemoReport:
    journeys: list[str] = field(default_factory=list)
    templates: int = 0
    pools: int = 0
    failed: list[str] = field(default_factory=list)


def journey_id_for(path: Path) -> str:
    """``01_new_user_first_order.journey`` → ``new-user-first-order``."""
    stem = path.stem.split("_", 1)[1] if path.stem[:2].isdigit() and "_" in path.stem else path.stem
    return stem.replace("_", "-")


def load_demo(store: Store, examples: Path = EXAMPLES) -> tuple[DemoReport, list[tuple[str, Journey]]]:
    """Seed copy and pools, publish every example; returns the published journeys."""
    report = DemoReport()
    seed = examples / "demo_seed.toml"
    if seed.exists():
        seeded = load_seed_file(store, seed)
        report.templates += len(seeded.templates)
        report.pools += len(seeded.pools)
    published: list[tuple[str, Journey]] = []
    for path in sorted(examples.glob("*.journey")):
        try:
            journey = load(str(path))
        except JourneyError as err:
            report.failed.append(f"{path.name}: {err.errors[0].message if err.errors else err}")
            continue
        report.templates += _fill_templates(store, journey)
        report.pools += _fill_pools(store, journey)
        journey_id = journey_id_for(path)
        catalog.publish(
            store,
            journey_id,
            name=journey.name,
            source=path.read_text(encoding="utf-8"),
            ir=journey.model_dump(mode="json"),
            hash=journey.content_hash(),
        )
        report.journeys.append(journey_id)
        published.append((journey_id, journey))
    return report, published


def _fill_templates(store: Store, journey: Journey) -> int:
    made = 0
    for step in iter_steps(journey.steps):
        if isinstance(step, SendStep) and _template_missing(store, step.template):
            templates.upsert_template(store, step.template, f"【{journey.name}】{step.template}（示例文案）")
            made += 1
    return made


def _template_missing(store: Store, name: str) -> bool:
    with store.read() as session:
        return templates.get_template(session, name) is None


def _fill_pools(store: Store, journey: Journey) -> int:
    made = 0
    for step in iter_steps(journey.steps):
        if isinstance(step, CouponStep) and coupons.get_pool(store, step.pool) is None:
            coupons.upsert_pool(store, step.pool, stock=DEMO_STOCK, value={"amount": 10})
            made += 1
    return made
