"""Engine settings, read from the environment by pydantic-settings.

Everything is prefixed ``JOURNEYS_`` except the two names operators already
export for other tools: ``DATABASE_URL`` and ``TEMPORAL_ADDRESS``. Nested models
use ``__``: ``JOURNEYS_DERIVED__ACTIVE_DAYS=14``; dicts and lists take JSON:
``JOURNEYS_CHANNEL_CAPS='{"sms": {"per_day": 1}}'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.channels.config import ChannelsConfig

# The longest a send may keep retrying a failing vendor (a day); the
# interpreter gives a side effect a little more before it gives up itself.
MAX_SEND_RETRY_SECONDS = 24 * 3600


class ChannelCap(BaseModel):
    """Extra limits for one channel on top of the global ones (SMS costs money,
    so it is usually capped harder than push)."""

    per_day: int | None = None
    per_week: int | None = None


class DerivedRules(BaseModel):
    """Thresholds for the lifecycle stage and the RFM layer (see ``engine.derived``).

    Operators tune these per brand; the defaults follow the usual private-domain
    playbook: paid in the last 30 days = paying, anything in 7 days = active,
    quiet 7–30 days = silent, quiet longer = churned.
    """

    payment_events: list[str] = Field(default_factory=lambda: ["order_paid"])
    amount_property: str = "amount"
    new_days: int = 7
    active_days: int = 7
    paying_days: int = 30
    churned_days: int = 30
    rfm_window_days: int = 365
    rfm_recency_days: int = 30  # R is high when the last payment is at most this old
    rfm_frequency: int = 2  # F is high with at least this many payments in the window
    rfm_monetary: float = 1000.0  # M is high when the window's amounts add up to this


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="JOURNEYS_",
        env_nested_delimiter="__",
        populate_by_name=True,
        extra="ignore",
    )

    data_dir: Path = Path("./data")
    database_url: str = Field(
        default="sqlite:///./data/journeys.db",
        validation_alias=AliasChoices("DATABASE_URL", "JOURNEYS_DATABASE_URL", "database_url"),
    )
    temporal_address: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TEMPORAL_ADDRESS", "JOURNEYS_TEMPORAL_ADDRESS", "temporal_address"),
    )
    temporal_namespace: str = "default"
    task_queue: str = "journeys"
    # Runs a worker keeps in memory between their workflow tasks. A run that
    # is not cached is replayed from its history when it wakes, which costs
    # several times a cached wake's CPU (``bench/waiting_bench.py``); each
    # cached run holds its IR and state (tens of kB).
    worker_workflow_cache: int = Field(default=1000, ge=0, le=1_000_000)
    # Workflow tasks one worker process works on at once. An overloaded worker
    # that takes more than it can finish within the task timeout (10 s) has
    # them time out and redone; the SDK's default is 100.
    worker_workflow_tasks: int = Field(default=100, ge=2, le=10_000)

    # Global frequency caps, per user across all journeys; None = no cap.
    cap_per_day: int | None = 2
    cap_per_week: int | None = 5
    # True: the day and week caps (and ``channel_caps``) count since the
    # user's local midnight / Monday 00:00 (else the journey's timezone)
    # instead of the last 24 hours / 7 days.
    cap_calendar: bool = False
    # A send that would take a user's last slot under the caps, while a live
    # journey of a better ``priority`` exists, waits this long (workflow time)
    # for that journey's send to the same user, which then gets the slot
    # (``engine.caps``). 0: first come, first served.
    cap_arbitration_seconds: int = Field(default=30, ge=0, le=3600)
    # A ``split test`` names a winner only with at least this many test runs
    # in every variant (else its ``otherwise`` variant), and p < 0.05.
    split_test_min_per_variant: int = Field(default=30, ge=1, le=100_000)
    channel_caps: dict[str, ChannelCap] = Field(default_factory=dict)
    # Channels that are system integrations, not messages a person reads.
    cap_exempt_channels: list[str] = Field(default_factory=lambda: ["webhook"])

    derived: DerivedRules = Field(default_factory=DerivedRules)

    # Channel providers (``engine.channels.build_providers(settings.channels)``),
    # e.g. ``JOURNEYS_CHANNELS__SMS__ACCESS_KEY_ID``.
    channels: ChannelsConfig = Field(default_factory=ChannelsConfig)

    coupon_code_prefix: str = "JC"
    # A send whose provider keeps failing retryably (timeouts, 5xx, throttling)
    # is retried, with the same key, until this long after its first attempt,
    # then recorded as failed with the reason (and can be replayed:
    # ``engine.replays``). Per channel in ``send_retry_deadlines`` (seconds);
    # at most ``MAX_SEND_RETRY_SECONDS``, below the interpreter's own bound
    # on a side effect (``workflows.activity_options.SIDE_EFFECT_DEADLINE``).
    # A vendor outage of an hour no longer fails its messages for good.
    send_retry_deadline_seconds: int = Field(default=6 * 3600, ge=0, le=MAX_SEND_RETRY_SECONDS)
    send_retry_deadlines: dict[str, Annotated[int, Field(ge=0, le=MAX_SEND_RETRY_SECONDS)]] = Field(
        default_factory=dict
    )
    # Also stop after this many attempts (None: the deadline alone decides).
    send_max_attempts: int | None = Field(default=None, ge=1)

    # Vendor callbacks (WeCom, Official Account: ``engine.callbacks``). A
    # body above this is refused before it is parsed or decrypted (the
    # vendors' event bodies are a few hundred bytes; a customer group's member
    # change list stays far below it).
    callback_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=2_000_000)
    # A callback stored but not yet made into journey events (the process
    # died, Temporal was down) is processed again this often, once this old;
    # 0 turns that sweep off (the next callback does not pick it up then).
    callback_retry_seconds: float = Field(default=30.0, ge=0)
    # A plaintext-mode Official Account callback is signed without its body,
    # so a signature seen once could carry another body later: refused when
    # its timestamp is further than this from now.
    callback_max_age_seconds: int = Field(default=300, ge=1)

    # Tracked links (``engine.tracked_links``): a template's ``{{ track(url) }}``
    # and ``{% filter track_links %}`` links become
    # ``<link_base_url>/r/<token>`` (the API's public address, e.g.
    # ``https://j.example.com``), the token signed with ``link_secret``
    # (HMAC-SHA256; at least 16 characters, the same in the API and the
    # worker) so a URL cannot be forged or enumerated. Without both, a send
    # whose template tracks a link fails with that reason (a link silently
    # left untracked would give clicks nobody counts).
    link_secret: SecretStr | None = Field(default=None, min_length=16)
    link_base_url: str | None = Field(default=None, pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$", max_length=200)
    # The most tracked links one message may carry (each is a row).
    link_max_per_message: int = Field(default=20, ge=1, le=100)
    # A GET whose User-Agent contains one of these (any case), a HEAD, an
    # empty User-Agent or a prefetch/preview ``Purpose`` header is a preview
    # or a crawler: redirected, not counted. Link-preview fetchers of chat
    # apps and search crawlers name themselves this way; WeChat's in-app
    # browser (``MicroMessenger``) is a person and is counted.
    link_bot_agents: list[str] = Field(
        default_factory=lambda: [
            "bot",
            "spider",
            "crawl",
            "preview",
            "facebookexternalhit",
            "whatsapp",
            "telegram",
            "slack",
            "discord",
            "skypeuripreview",
            "embedly",
            "curl/",
            "wget/",
            "python-requests",
            "python-httpx",
            "go-http-client",
        ]
    )

    def send_retry_deadline(self, channel: str | None) -> int:
        """Seconds a send on ``channel`` keeps retrying."""
        return self.send_retry_deadlines.get(channel or "", self.send_retry_deadline_seconds)
