"""Coupon pools: create, update terms and stock, top up, list, get."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Response

from api.deps import Operator, StoreDep, viewer
from api.problems import Problem, not_found
from api.schemas import NameStr, PoolIn, PoolOut, PoolTerms, StockIn
from engine import queries
from engine.coupons import add_stock, get_pool, upsert_pool
from engine.store import Store

router = APIRouter(prefix="/v1/pools", tags=["coupon pools"], dependencies=[Depends(viewer)])


def _save(store: Store, name: str, terms: PoolTerms) -> PoolOut:
    info = upsert_pool(
        store,
        name,
        stock=terms.stock,
        per_user_limit=terms.per_user_limit,
        value=terms.value,
        expires_after_seconds=terms.expires_after_seconds,
    )
    return PoolOut.model_validate(info)


@router.get("", response_model=list[PoolOut], summary="List coupon pools")
async def list_all(store: StoreDep) -> list[PoolOut]:
    return [PoolOut.model_validate(p) for p in await asyncio.to_thread(queries.list_pools, store)]


@router.post("", response_model=PoolOut, status_code=201, summary="Create a pool (409 if the name exists)")
async def create(body: PoolIn, store: StoreDep, _: Operator) -> PoolOut:
    if await asyncio.to_thread(get_pool, store, body.name) is not None:
        raise Problem(409, f"pool {body.name!r} exists; PUT /v1/pools/{{name}} updates it")
    return await asyncio.to_thread(_save, store, body.name, body)


@router.get("/{name}", response_model=PoolOut, summary="A pool with its remaining stock")
async def get_one(name: NameStr, store: StoreDep) -> PoolOut:
    found = await asyncio.to_thread(get_pool, store, name)
    if found is None:
        raise not_found("pool", name)
    return PoolOut.model_validate(found)


@router.put(
    "/{name}",
    response_model=PoolOut,
    summary="Create a pool or reset its stock and terms",
    responses={201: {"model": PoolOut, "description": "Created"}},
)
async def put(name: NameStr, body: PoolTerms, response: Response, store: StoreDep, _: Operator) -> PoolOut:
    existed = await asyncio.to_thread(get_pool, store, name) is not None
    out = await asyncio.to_thread(_save, store, name, body)
    response.status_code = 200 if existed else 201
    return out


@router.post("/{name}/stock", response_model=PoolOut, summary="Top up (or withdraw, negative) stock atomically")
async def stock(name: NameStr, body: StockIn, store: StoreDep, _: Operator) -> PoolOut:
    try:
        info = await asyncio.to_thread(add_stock, store, name, body.amount)
    except KeyError:
        raise not_found("pool", name) from None
    return PoolOut.model_validate(info)
