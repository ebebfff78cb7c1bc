"""The guarantees table of ``engine.channels`` held against the stand-ins:
which providers reconcile, and what a retry after a lost answer does on the
channels that cannot."""

from __future__ import annotations

from datetime import UTC, datetime

from engine.channels import Reconcilable, build_providers
from engine.reconcile import send_once

from .vendors import Canned, VendorState, live_config

OA_SEND = "/wechat/cgi-bin/message/template/send"
MP_SEND = "/wechat/cgi-bin/message/subscribe/send"
PUSH = "/push/push/send"
HOOK = "/hook"


def providers(base_url: str) -> dict:
    timeouts = {"timeout_s": 0.3}
    return build_providers(
        live_config(base_url, official_account=timeouts, miniprogram=timeouts, push=timeouts, webhook=timeouts)
    )


def test_exactly_the_keyless_askable_vendors_reconcile(base_url: str) -> None:
    reconcilable = {ch for ch, p in providers(base_url).items() if isinstance(p, Reconcilable)}
    assert reconcilable == {"sms", "wecom", "wecom_group"}


async def test_official_account_retry_is_deduped_by_client_msg_id(
    vendor: VendorState, base_url: str, make_message
) -> None:
    vendor.oa_templates.add("TPL-OA-1")
    vendor.oa_subscribers.add("o-1")
    vendor.script(OA_SEND, Canned(process=True, delay_s=1.5))
    p, msg = providers(base_url)["official_account"], make_message("official_account", "o-1")
    started = datetime.now(UTC)
    assert (await send_once(p, msg, earlier_attempt_at=None)).status == "failed"
    assert (await send_once(p, msg, earlier_attempt_at=started)).status == "sent"
    assert len(vendor.calls(OA_SEND)) == 2 and len(vendor.oa_delivered) == 1  # one message at the user


async def test_miniprogram_retry_is_at_least_once(vendor: VendorState, base_url: str, make_message) -> None:
    # No key, no query: the retry is a second message and spends a second grant.
    vendor.script(MP_SEND, Canned(process=True, delay_s=1.5))
    vendor.mp_grants["mp-1"] = 2
    p, msg = providers(base_url)["miniprogram"], make_message("miniprogram", "mp-1")
    started = datetime.now(UTC)
    assert (await send_once(p, msg, earlier_attempt_at=None)).status == "failed"
    assert (await send_once(p, msg, earlier_attempt_at=started)).status == "sent"
    assert vendor.mp_grants["mp-1"] == 0


async def test_miniprogram_retry_without_grant_is_recorded_failed_though_delivered(
    vendor: VendorState, base_url: str, make_message
) -> None:
    vendor.script(MP_SEND, Canned(process=True, delay_s=1.5))
    vendor.mp_grants["mp-1"] = 1
    p, msg = providers(base_url)["miniprogram"], make_message("miniprogram", "mp-1")
    started = datetime.now(UTC)
    await send_once(p, msg, earlier_attempt_at=None)
    retry = await send_once(p, msg, earlier_attempt_at=started)
    assert retry.status == "failed" and not retry.retryable and "43101" in (retry.error or "")
    assert vendor.mp_grants["mp-1"] == 0  # the first one did reach the user


async def test_push_and_webhook_retries_carry_the_same_key(vendor: VendorState, base_url: str, make_message) -> None:
    vendor.push_users.add("app-1")
    vendor.script(PUSH, Canned(process=True, delay_s=1.5))
    vendor.script(HOOK, Canned(process=True, delay_s=1.5))
    built = providers(base_url)
    started = datetime.now(UTC)
    for channel, address, path in (("push", "app-1", PUSH), ("webhook", None, HOOK)):
        msg = make_message(channel, address)
        assert (await send_once(built[channel], msg, earlier_attempt_at=None)).status == "failed"
        assert (await send_once(built[channel], msg, earlier_attempt_at=started)).status == "sent"
        assert {c.headers["idempotency-key"] for c in vendor.calls(path)} == {msg.idempotency_key}
    assert len(vendor.push_seen) == 1 and len(vendor.webhook_seen) == 1
