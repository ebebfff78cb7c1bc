"""Preview a real user's path: ``runtime.simulate_as_user`` copies a user of
a real SQLite store (seeded through identify/track, tags, consent and the
caps), the simulator runs the copy like any test user, and the path follows
the real user's tags, derived stage, consent and recent sends; the real
store is left as it was. Then ``journeys simulate --as-user`` as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.events import ingest_event
from runtime import simulate_as_user
from runtime.simulate import simulate
from runtime.simulate_as_user import UnknownUser, copy_user, world_for
from runtime.simulate_model import THIS_JOURNEY, Case

from .as_user_world import FRESH, JOURNEY, PHONE, QUIET, VIP, RealWorld, row_counts, seed
from .support import ROOT


@pytest.fixture
def real(tmp_path: Path) -> Iterator[RealWorld]:
    world = seed(tmp_path)
    yield world
    world.store.dispose()


def test_the_copy_carries_what_the_path_depends_on(real: RealWorld) -> None:
    user, copied = copy_user(real.store, VIP, now=real.now, rules=real.settings.derived)
    assert user.id == VIP and user.identities == {"wecom_external_userid": "wm-vip", "phone": "13800000070"}
    assert user.tags == ["vip"]  # stage:/rfm: are derived again from the events
    assert user.opted_out == ["wecom"] and user.timezone == "Asia/Shanghai"
    assert [(e.name, e.at, e.properties) for e in user.past_events] == [("order_paid", "-259200s", {"amount": 300})]
    assert user.first_seen == f"-{60 * 86400}s"
    assert (copied.stage, copied.events, copied.events_left_out, copied.notes) == ("paying", 1, 0, [])
    assert copied.identities == ["phone", "wecom_external_userid"]  # kinds, never values
    assert PHONE not in copied.model_dump_json()

    quiet, copied = copy_user(real.store, QUIET, now=real.now, journey_id="another")
    assert [(s.channel, s.at, s.journey) for s in quiet.recent_sends] == [
        ("sms", f"-{5 * 3600}s", THIS_JOURNEY),  # the previewed journey's own sends count against its limit
        ("sms", f"-{2 * 3600}s", THIS_JOURNEY),
    ]
    assert [e.at for e in quiet.past_events] == [f"-{20 * 86400}s"]  # the one 400 days ago is left out
    assert copied.events_left_out == 1 and "1 older event(s) not copied" in copied.notes[0]
    with pytest.raises(UnknownUser):
        copy_user(real.store, "nobody", now=real.now)


def test_the_copy_keeps_the_newest_events_within_its_bound(real: RealWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simulate_as_user, "MAX_HISTORY", 1)
    for n in range(3):
        ingest_event(real.store, event_id=f"more-{n}", name=f"visit_{n}", user_id=FRESH)
    user, copied = copy_user(real.store, FRESH)
    assert [e.name for e in user.past_events] == ["visit_2"]
    assert copied.events_left_out == 3


async def test_each_copy_takes_the_path_of_the_real_user(real: RealWorld, sim_env) -> None:
    before = row_counts(real.store)
    cases = []
    for uid in (VIP, QUIET, FRESH):
        user, _ = copy_user(real.store, uid, rules=real.settings.derived)
        cases.append(Case(name=uid, user=user))
    result = await simulate(JOURNEY, cases, world=world_for(real.settings), env=sim_env)
    vip, quiet, fresh = result.cases
    assert [(m.template, m.channel, m.status) for m in vip.messages] == [("vip_thanks", "sms", "sent")]
    assert [(m.template, m.status) for m in quiet.messages] == [("winback", "suppressed")]
    assert "2 messages per day" in (quiet.messages[0].reason or "")
    assert [(m.template, m.status) for m in fresh.messages] == [("hello", "sent")]
    assert row_counts(real.store) == before  # read only


def _cli(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOURNEYS_") and k != "DATABASE_URL"}
    return subprocess.run(
        [sys.executable, "-m", "runtime.simulate_cli", "simulate", *args],
        cwd=ROOT,
        env={**env, "DATABASE_URL": database_url},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_journeys_simulate_as_user(real: RealWorld, tmp_path: Path) -> None:
    journey = tmp_path / "preview.journey"
    journey.write_text(JOURNEY, encoding="utf-8")
    before = row_counts(real.store)
    done = _cli(str(journey), "--as-user", VIP, database_url=real.url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith(f"a copy of user {VIP}: identities phone, wecom_external_userid; 1 tag(s)")
    assert "opted out of wecom" in done.stdout
    assert "vip_thanks → sent via sms" in done.stdout
    as_json = _cli(str(journey), "--as-user", QUIET, "--json", database_url=real.url)
    assert as_json.returncode == 0, as_json.stdout + as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["as_user"]["recent_sends"] == 2 and data["cases"][0]["messages"][0]["status"] == "suppressed"
    assert row_counts(real.store) == before

    unknown = _cli(str(journey), "--as-user", "nobody", database_url=real.url)
    assert unknown.returncode == 2 and "no user 'nobody' in the store" in unknown.stdout
    both = _cli(str(journey), "--as-user", VIP, "--user", str(journey), database_url=real.url)
    assert both.returncode == 2 and "without --user or --cases" in both.stdout
    missing = _cli(str(journey), "--as-user", VIP, database_url=f"sqlite:///{tmp_path / 'none.db'}")
    assert missing.returncode == 2 and "no store at" in missing.stdout
    assert not (tmp_path / "none.db").exists()  # reading never creates a store
