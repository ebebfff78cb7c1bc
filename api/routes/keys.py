"""API keys an admin creates, lists and revokes without a restart.

Keys from settings keep working and are not listed; the ones made here are
stored as digests (``engine.api_keys``): the key itself is in the answer to
``POST`` only, once.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.deps import KeyRingDep, StoreDep, admin
from api.problems import not_found
from engine import api_keys

router = APIRouter(prefix="/v1/keys", tags=["keys"], dependencies=[Depends(admin)])


class KeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, StringConstraints(min_length=1, max_length=128, strip_whitespace=True)] = Field(
        description="Who or what uses the key, e.g. 'ops team console' or 'mini program ingest'"
    )
    role: Literal["viewer", "operator", "admin", "write"] = Field(
        description="viewer reads; operator also deploys, starts and stops; admin also manages keys; "
        "write only sends events (/v1/track, /v1/identify, /v1/batch)"
    )


class KeyOut(BaseModel):
    id: str
    name: str
    role: str
    hint: str = Field(description="The key's last four characters")
    created_at: datetime
    revoked_at: datetime | None


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, store it now")


def _out(info: api_keys.KeyInfo) -> KeyOut:
    return KeyOut(**info.__dict__)


KeyId = Annotated[str, Path(max_length=32, pattern=r"^key_[0-9a-f]+$")]


@router.post("", response_model=NewKeyOut, status_code=201, summary="Create a key (shown once)")
async def create_key(body: KeyIn, store: StoreDep, keyring: KeyRingDep) -> NewKeyOut:
    info, key = await asyncio.to_thread(api_keys.create, store, body.name, body.role)
    keyring.forget()
    return NewKeyOut(**info.__dict__, key=key)


@router.get("", response_model=list[KeyOut], summary="Keys created through the API (never the keys themselves)")
async def list_keys(store: StoreDep) -> list[KeyOut]:
    return [_out(i) for i in await asyncio.to_thread(api_keys.listing, store)]


@router.delete("/{key_id}", response_model=KeyOut, summary="Revoke a key (at once here, within 10 s everywhere)")
async def revoke_key(key_id: KeyId, store: StoreDep, keyring: KeyRingDep) -> KeyOut:
    info = await asyncio.to_thread(api_keys.revoke, store, key_id)
    if info is None:
        raise not_found("key", key_id)
    keyring.forget()
    return _out(info)
