"""A throwaway store for one simulated case, seeded through the engine's own
functions: the journey deployed (so event entries and later events reach
the run through ``engine.dispatch`` as in production), templates and coupon
pools, and the test user with identities, attributes, tags, consent, past
events (stage and RFM derive from them) and recent sends (the global cap
counts them).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy.orm import Session

from dsl.ir import CouponStep, Journey, SendStep, iter_steps
from engine import caps, catalog, consent, coupons, identity, tags, templates
from engine.events import ingest_event
from engine.settings import ChannelCap, DerivedRules, Settings
from engine.store import Store
from runtime.simulate_model import DEFAULT_POOL_STOCK, THIS_JOURNEY, Case, World, parse_moment


def case_settings(world: World, database: Path, task_queue: str) -> Settings:
    from engine.channels.config import ChannelsConfig

    return Settings(
        database_url=f"sqlite:///{database}",
        task_queue=task_queue,
        cap_per_day=world.cap_per_day,
        cap_per_week=world.cap_per_week,
        channel_caps={name: ChannelCap(**limits) for name, limits in world.channel_caps.items()},
        derived=world.derived or DerivedRules(),
        channels=ChannelsConfig(mode="outbox"),
    )


def seed_store(
    store: Store,
    settings: Settings,
    journey: Journey,
    journey_id: str,
    source: str,
    world: World,
    case: Case,
    start: datetime,
) -> str:
    """Deploy the journey, seed the world and the user; returns the user id."""
    catalog.publish(
        store,
        journey_id,
        name=journey.name,
        source=source,
        ir=journey.model_dump(mode="json"),
        hash=journey.content_hash(),
    )
    _seed_templates(store, journey, world)
    _seed_pools(store, journey, world, case)
    return _seed_user(store, settings, case, start, journey_id)


def _seed_templates(store: Store, journey: Journey, world: World) -> None:
    used = [s.template for s in iter_steps(journey.steps) if isinstance(s, SendStep)]
    for name in dict.fromkeys([*world.templates, *used]):
        spec = world.templates.get(name)
        if spec is None:
            templates.upsert_template(store, name, name)
        else:
            templates.upsert_template(
                store,
                name,
                spec.body,
                channel_bodies=spec.channels,
                subject=spec.subject,
                transactional=spec.transactional,
            )


def _seed_pools(store: Store, journey: Journey, world: World, case: Case) -> None:
    used = [s.pool for s in iter_steps(journey.steps) if isinstance(s, CouponStep)]
    for name in dict.fromkeys([*world.pools, *used, *case.pools]):
        spec = world.pools.get(name)
        stock = case.pools.get(name, spec.stock if spec else DEFAULT_POOL_STOCK)
        coupons.upsert_pool(
            store,
            name,
            stock=stock,
            per_user_limit=spec.per_user_limit if spec else 1,
            value=spec.value if spec else {},
            expires_after_seconds=spec.expires_after_seconds if spec else None,
        )


def _seed_user(store: Store, settings: Settings, case: Case, start: datetime, journey_id: str) -> str:
    user = case.user
    first_seen = parse_moment(user.first_seen, start)
    attributes = dict(user.attributes)
    if user.timezone:
        attributes["timezone"] = user.timezone

    def create(s: Session) -> str:
        uid = identity.identify(s, dict(user.identities), user_id=user.id, now=first_seen)
        if attributes:
            identity.set_attributes(s, uid, attributes, now=first_seen)
        if user.tags:
            tags.add_tags(s, uid, list(user.tags), source="simulation", now=first_seen)
        for channel in user.opted_out:
            consent.set_opt_out(s, uid, channel, source="simulation", now=first_seen)
        return uid

    uid = store.transact(create)
    for number, past in enumerate(sorted(user.past_events, key=lambda p: parse_moment(p.at, start))):
        at = parse_moment(past.at, start)
        if at > start:
            raise ValueError(f"past event {past.name!r} at {past.at} is after the start")
        ingest_event(
            store,
            event_id=f"past-{number}",
            name=past.name,
            user_id=uid,
            properties=past.properties,
            occurred_at=at,
            rules=settings.derived,
            now=start,
        )
    for number, sent in enumerate(user.recent_sends):
        request = caps.CapRequest(
            user_id=uid,
            channel=sent.channel,
            delivery_key=f"recent-{number}",
            now=parse_moment(sent.at, start),
            journey_id=journey_id if sent.journey == THIS_JOURNEY else sent.journey,
        )
        store.transact(lambda s, r=request: caps.check_and_count(s, store, settings, r))
    return uid
