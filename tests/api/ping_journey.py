"""The smallest event journey on the API stack: every event of its own name
enters (``reentry always``) and sends one webhook. The ingest tests
(redelivery, bounded delivery) count its deliveries per event."""

from __future__ import annotations

from tests.api.conftest import Stack, auth, unique

PING = """\
journey "{name}"
  entry event {event}
  reentry always
  send webhook "{template}"
"""


async def deploy_ping(stack: Stack, prefix: str) -> tuple[str, str]:
    """Deploy a fresh ping journey; returns (journey id, its entry event)."""
    jid, event, template = unique(prefix), unique("clicked").replace("-", "_"), unique(f"{prefix}_tpl")
    r = await stack.http.put(f"/v1/templates/{template}", json={"body": "hi {{ user.id }}"}, headers=auth())
    assert r.status_code in (200, 201), r.text
    source = PING.format(name=jid, event=event, template=template)
    r = await stack.http.post("/v1/journeys", json={"source": source, "id": jid}, headers=auth())
    assert r.status_code == 201, r.text
    return jid, event
