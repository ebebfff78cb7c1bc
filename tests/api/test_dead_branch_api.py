"""W309 through the API: ``/check``, ``/edit`` and a deploy warn about a
branch no user can take under *this service's* stage and RFM rules, and a
service whose rules allow it does not."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from api.app import create_app
from engine.settings import DerivedRules
from engine.store import Store
from tests.api.conftest import ADMIN, VIEWER, auth, make_settings

SOURCE = """\
journey "winback"
  entry event app_opened
  if stage is paying:
    send sms "thanks"
  else if rfm is high:
    send sms "vip"
"""


@asynccontextmanager
async def _api(tmp_path: Path, rules: DerivedRules) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(tmp_path, "nowhere", derived=rules, check_references=False)
    store = Store(settings.database_url)
    store.migrate()
    app = create_app(settings, store=store)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client
    store.dispose()


def _w309(items: list[dict]) -> list[dict]:
    return [i for i in items if i["code"] == "W309"]


async def test_check_edit_and_deploy_warn_with_the_services_rules(tmp_path: Path) -> None:
    async with _api(tmp_path / "default", DerivedRules()) as http:
        checked = (await http.post("/v1/journeys/check", json={"source": SOURCE}, headers=auth(VIEWER))).json()
        [warning] = _w309(checked["errors"])
        assert checked["ok"] is True and warning["severity"] == "warning" and warning["line"] == 5
        assert "never RFM high" in warning["hint"] and "not stage is paying" in warning["message"]
        edit = {
            "op": "replace_step",
            "node": "send-sms-thanks",
            "step": {"kind": "tag", "action": "add", "tags": ["t"]},
        }
        edited = await http.post("/v1/journeys/edit", json={"source": SOURCE, "edit": edit}, headers=auth(VIEWER))
        assert edited.status_code == 200, edited.text
        assert [d["line"] for d in _w309(edited.json()["diagnostics"])] == [5]
        body = {"id": "winback", "source": SOURCE, "check_references": False}
        deployed = await http.post("/v1/journeys", json=body, headers=auth(ADMIN))
        assert deployed.status_code == 201, deployed.text
        assert [w["line"] for w in _w309(deployed.json()["warnings"])] == [5]
    async with _api(tmp_path / "longer", DerivedRules(rfm_recency_days=90)) as http:
        checked = (await http.post("/v1/journeys/check", json={"source": SOURCE}, headers=auth(VIEWER))).json()
        assert _w309(checked["errors"]) == []
