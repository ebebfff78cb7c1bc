"""Settings of the HTTP service, on top of the engine's.

Keys come from two places: these settings, rotated by changing
``JOURNEYS_API_KEYS`` / ``JOURNEYS_WRITE_KEYS`` and restarting (the same way
operators manage ``DATABASE_URL``), and the keys table an admin fills
through ``/v1/keys`` (stored as SHA-256 digests, ``engine.api_keys``; read
by ``api.keyring``). In the environment:

- ``JOURNEYS_API_KEYS='{"k-admin": "admin", "k-ops": "operator", "k-ro": "viewer"}'``
- ``JOURNEYS_WRITE_KEYS='["wk-site", "wk-app"]'`` (Segment write keys: ingest only)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from engine.settings import Settings
from engine.store.models import IDENTITY_KINDS

Role = Literal["viewer", "operator", "admin"]
ROLE_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}


class ApiSettings(Settings):
    api_keys: dict[str, Role] = Field(default_factory=dict)
    write_keys: list[str] = Field(default_factory=list)
    # Segment's ``userId`` is the brand's own member id by default; a brand whose
    # userId is the app's user id sets ``JOURNEYS_SEGMENT_USER_ID_KIND=app_user_id``.
    segment_user_id_kind: str = "member_id"
    # Upper bounds that keep one request cheap (and the API free of 500s on
    # absurd input): events per Segment batch, users per start request.
    max_batch_events: int = 500
    max_start_users: int = 1000
    max_body_bytes: int = 2_000_000
    # JSON logs with identifiers masked (``api.logs``); off gives plain text.
    log_json: bool = True
    log_level: str = "INFO"
    # Events stored but not delivered to Temporal (a crash in between, Temporal
    # down) are delivered again by a sweep this often, once at least this old
    # (``engine.dispatch``); 0 turns the sweep off (a resend still delivers).
    redispatch_seconds: float = 30.0
    # The sweep drains a backlog page after page of this many events,
    # delivering this many users at once (``engine.dispatch.Bounds``).
    redispatch_batch: int = 500
    redispatch_concurrency: int = 16
    # Nothing waits on Temporal without a bound (it may be slow or down; its
    # client retries an unreachable server for about ten seconds a call): a
    # Segment request waits for its delivery this long at most, then answers
    # 202 (stored; delivered in the background); a delivery gives up after
    # ``delivery_deadline_seconds`` (the sweep makes it later); at shutdown the
    # deliveries still under way get ``shutdown_grace_seconds``.
    ingest_answer_seconds: float = 2.0
    delivery_deadline_seconds: float = 30.0
    shutdown_grace_seconds: float = 5.0

    def model_post_init(self, __context: object) -> None:
        if self.segment_user_id_kind not in IDENTITY_KINDS:
            raise ValueError(f"segment_user_id_kind must be one of {', '.join(IDENTITY_KINDS)}")


def as_api_settings(settings: Settings) -> ApiSettings:
    """Accept plain engine settings too (``journeys up`` builds either)."""
    if isinstance(settings, ApiSettings):
        return settings
    return ApiSettings(**settings.model_dump())
