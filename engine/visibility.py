"""Who is where right now, from Temporal visibility (the search attributes
``contracts.search_attributes`` names, which every start sets and waiting
steps upsert). The store says what happened; this says what is going on."""

from __future__ import annotations

import asyncio

from temporalio.client import Client

from contracts import search_attributes as sa


def quote(value: str) -> str:
    """A visibility-query string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def running_query(journey_id: str, version: int | None = None, step: str | None = None) -> str:
    """Running runs of the journey (of one version, waiting at one step)."""
    query = f'JourneyId = {quote(journey_id)} AND ExecutionStatus = "Running"'
    if version is not None:
        query += f" AND JourneyVersion = {int(version)}"
    if step is not None:
        query += f" AND JourneyStep = {quote(step)}"
    return query


async def waiting_counts(
    client: Client, journey_id: str, node_ids: list[str], version: int | None = None
) -> dict[str, int]:
    """Running runs per node they wait at. Visibility cannot GROUP BY a custom
    keyword, so one count per waiting node (only wait-type nodes upsert it)."""

    async def one(node: str) -> tuple[str, int]:
        result = await client.count_workflows(running_query(journey_id, version, node))
        return node, int(result.count)

    return dict(await asyncio.gather(*(one(n) for n in node_ids)))


async def running_count(client: Client, journey_id: str) -> int:
    result = await client.count_workflows(running_query(journey_id))
    return int(result.count)


async def waiting_users(
    client: Client, journey_id: str, node_id: str, limit: int, version: int | None = None
) -> list[str]:
    """Users whose run waits at the node now (of one version if given)."""
    users, _ = await waiting_page(client, journey_id, node_id, limit, version)
    return users


async def waiting_page(
    client: Client,
    journey_id: str,
    node_id: str,
    limit: int,
    version: int | None = None,
    token: bytes | None = None,
) -> tuple[list[str], bytes | None]:
    """One page of the users waiting at the node, and the token of the next
    page (None on the last): visibility's own paging, so 100k waiting runs
    are listed ``limit`` at a time."""
    pages = client.list_workflows(
        running_query(journey_id, version, node_id), page_size=limit, next_page_token=token or None
    )
    await pages.fetch_next_page(page_size=limit)
    users = [wf.typed_search_attributes.get(sa.JOURNEY_USER) or wf.id for wf in pages.current_page[:limit]]
    return users, pages.next_page_token or None
