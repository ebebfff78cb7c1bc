"""A real store with real users for the "preview a real user's path" tests,
seeded through the engine's own ingest functions (identify, track, tags,
consent, the caps' counting), and a journey whose path depends on the
user's tags, derived stage, consent and recent sends."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from engine import caps, consent
from engine.events import ingest_event, link_identities
from engine.settings import Settings
from engine.store import Store
from engine.store.models import Base
from engine.tags import change_tags

JOURNEY = """\
journey "preview"
  entry api
  if tag vip and stage is paying:
    send best of wecom, sms "vip_thanks"
  else if stage is silent:
    send sms "winback"
  else:
    send sms "hello"
"""

VIP, QUIET, FRESH = "vip-1", "quiet-1", "fresh-1"
PHONE = "13800000071"  # personal data the tests look for in the logs
NAME = "Quentin Privé"


@dataclass
class RealWorld:
    store: Store
    settings: Settings
    url: str
    now: datetime


def seed(tmp: Path) -> RealWorld:
    """Three users as production would hold them:

    - ``vip-1``: WeCom and a phone, tag vip, paid three days ago (stage
      paying), opted out of WeCom: the VIP branch, sent by SMS;
    - ``quiet-1``: a phone, last seen 20 days ago (stage silent), two
      messages counted in the last hours (the day cap is 2): the winback
      branch, suppressed by the cap;
    - ``fresh-1``: a phone, seen today, nothing else: the else branch."""
    url = f"sqlite:///{tmp / 'real.db'}"
    settings = Settings(database_url=url)
    store = Store(url)
    store.migrate()
    now = datetime.now(UTC)
    rules = settings.derived
    link_identities(
        store,
        {"wecom_external_userid": "wm-vip", "phone": "13800000070"},
        user_id=VIP,
        attributes={"name": "Vi", "timezone": "Asia/Shanghai"},
        rules=rules,
        now=now - timedelta(days=60),
    )
    ingest_event(
        store,
        event_id="e-vip-1",
        name="order_paid",
        user_id=VIP,
        properties={"amount": 300},
        occurred_at=now - timedelta(days=3),
        rules=rules,
    )
    change_tags(store, VIP, ["vip"], source="crm", add=True)
    consent.opt_out(store, VIP, "wecom", source="unsubscribe")

    link_identities(
        store, {"phone": PHONE}, user_id=QUIET, attributes={"name": NAME}, rules=rules, now=now - timedelta(days=90)
    )
    ingest_event(store, event_id="e-quiet-old", name="app_open", user_id=QUIET, occurred_at=now - timedelta(days=400))
    ingest_event(store, event_id="e-quiet-1", name="app_open", user_id=QUIET, occurred_at=now - timedelta(days=20))
    for hours in (5, 2):
        request = caps.CapRequest(
            user_id=QUIET,
            channel="sms",
            delivery_key=f"real-send-{hours}",
            now=now - timedelta(hours=hours),
            journey_id="another",
        )
        assert store.transact(lambda s, r=request: caps.check_and_count(s, store, settings, r)) is None

    link_identities(store, {"phone": "13800000072"}, user_id=FRESH, rules=rules)
    ingest_event(store, event_id="e-fresh-1", name="app_open", user_id=FRESH, occurred_at=now - timedelta(hours=1))
    return RealWorld(store, settings, url, now)


def row_counts(store: Store) -> dict[str, int]:
    """Rows of every table: a preview must leave them all as they were."""
    with store.read() as s:
        return {t.name: s.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}
