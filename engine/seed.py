"""Load templates and coupon pools from a JSON or TOML file.

Operators keep message copy and coupon terms next to their journeys; one file
seeds a fresh store (dev server, demo, tests) and re-running it is safe:
templates only get a new version when their text changed, pools are reset to
the given stock and terms.

Shape (TOML shown; JSON is the same structure)::

    [templates.welcome]
    body = "{{ user.name }}，欢迎加入！"
    channels = { sms = "【品牌】欢迎加入，回T退订" }
    subject = "欢迎"            # optional, email
    transactional = false       # optional

    [pools.first_order]
    stock = 1000
    per_user_limit = 1
    value = { amount = 20, min_spend = 99 }
    expires_after_seconds = 604800
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.coupons import upsert_pool
from engine.store import Store
from engine.templates import upsert_template


@dataclass(frozen=True)
class SeedReport:
    templates: list[str]
    pools: list[str]


def load_seed(store: Store, data: Mapping[str, Any]) -> SeedReport:
    templates: list[str] = []
    for name, spec in (data.get("templates") or {}).items():
        upsert_template(
            store,
            name,
            spec["body"],
            channel_bodies=spec.get("channels") or {},
            subject=spec.get("subject"),
            transactional=bool(spec.get("transactional", False)),
        )
        templates.append(name)
    pools: list[str] = []
    for name, spec in (data.get("pools") or {}).items():
        upsert_pool(
            store,
            name,
            stock=int(spec["stock"]),
            per_user_limit=int(spec.get("per_user_limit", 1)),
            value=spec.get("value") or {},
            expires_after_seconds=spec.get("expires_after_seconds"),
        )
        pools.append(name)
    return SeedReport(templates, pools)


def load_seed_file(store: Store, path: str | Path) -> SeedReport:
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    return load_seed(store, data)
