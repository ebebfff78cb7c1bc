"""Keys an admin creates through the API: shown once, stored as digests,
working at once with their role, listed without the secret, and refused as
soon as they are revoked. No Temporal needed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from sqlalchemy import select

from api.app import create_app
from engine.store import Store
from engine.store.models import ApiKey
from tests.api.conftest import ADMIN, OPERATOR, make_settings, unique

SOURCE = 'journey "{name}"\n  entry api\n  send webhook "hook"\n'


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Store]]:
    settings = make_settings(tmp_path, "nowhere")
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        yield http, store
    store.dispose()


async def test_an_admin_makes_a_key_that_works_until_revoked(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, store = api
    r = await http.post("/v1/keys", json={"name": "运营小组", "role": "operator"}, headers=bearer(ADMIN))
    assert r.status_code == 201, r.text
    made = r.json()
    key = made["key"]
    assert key.startswith("jk_") and made["hint"] == key[-4:] and made["role"] == "operator"
    with store.read() as s:  # only the digest is kept
        stored = s.scalars(select(ApiKey)).one()
    assert key not in (stored.key_hash, stored.hint, stored.name) and len(stored.key_hash) == 64

    jid = unique("by-new-key")
    deployed = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=bearer(key))
    assert deployed.status_code == 201, deployed.text
    assert (await http.post("/v1/keys", json={"name": "x", "role": "viewer"}, headers=bearer(key))).status_code == 403

    listed = (await http.get("/v1/keys", headers=bearer(ADMIN))).json()
    assert [(k["id"], k["role"], k["revoked_at"]) for k in listed] == [(made["id"], "operator", None)]
    assert "key" not in listed[0] and key not in str(listed)

    revoked = await http.delete(f"/v1/keys/{made['id']}", headers=bearer(ADMIN))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    gone = await http.get("/v1/journeys", headers=bearer(key))
    assert gone.status_code == 401 and gone.json()["detail"] == "unknown API key"
    assert (await http.delete("/v1/keys/key_0000", headers=bearer(ADMIN))).status_code == 404


async def test_roles_of_made_keys(api: tuple[httpx.AsyncClient, Store]) -> None:
    http, _ = api
    viewer = (await http.post("/v1/keys", json={"name": "v", "role": "viewer"}, headers=bearer(ADMIN))).json()["key"]
    write = (await http.post("/v1/keys", json={"name": "w", "role": "write"}, headers=bearer(ADMIN))).json()["key"]
    assert (await http.get("/v1/journeys", headers=bearer(viewer))).status_code == 200
    jid = unique("viewer-cannot")
    r = await http.post("/v1/journeys", json={"source": SOURCE.format(name=jid), "id": jid}, headers=bearer(viewer))
    assert r.status_code == 403
    read = await http.get("/v1/journeys", headers=bearer(write))
    assert read.status_code == 403 and "write keys" in read.json()["detail"]
    # a made write key is a write key for ingest too (here Temporal is absent: stored, 202, not 401)
    track = await http.post("/v1/track", json={"userId": "u1", "event": "e"}, auth=(write, ""))
    assert track.status_code == 202
    assert (await http.post("/v1/track", json={"userId": "u1", "event": "e"}, auth=("jk_nope", ""))).status_code == 401
    assert (await http.get("/v1/keys", headers=bearer(OPERATOR))).status_code == 403
    bad = await http.post("/v1/keys", json={"name": "x", "role": "root"}, headers=bearer(ADMIN))
    assert bad.status_code == 422
