"""Vendor callbacks: ``/v1/callbacks/wecom`` (企业微信 customer contact)
and ``/v1/callbacks/official-account`` (公众号), plus
``GET /v1/callbacks/receipts`` (viewer) to see what arrived.

No API key on the callbacks themselves: the vendor authenticates by signing
with the callback Token (and encrypting with the EncodingAESKey) configured
on both sides (``JOURNEYS_CHANNELS__WECOM__CALLBACK_TOKEN`` /
``__CALLBACK_AES_KEY``, ``JOURNEYS_CHANNELS__OFFICIAL_ACCOUNT__…``).
Refusals are problem documents the vendor's console shows an operator while
they set the URL up: 404 not configured, 400 malformed, 403 bad signature,
a message encrypted for another corp or app, a plaintext body where safe
mode is configured, a stale plaintext signature; 413 too large, 503 the
database is down (the vendor retries). Everything past the decryption is
``engine.callbacks``'s: the message is stored first, "success" answered,
journey events made off the request path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from api.deps import SettingsDep, StoreDep, viewer
from api.problems import Problem
from api.schemas import ProblemOut
from api.settings import ApiSettings
from engine.callbacks import messages, official_account, receipts, wecom
from engine.callbacks.processing import CallbackProcessor
from engine.channels.config import OfficialAccountConfig
from engine.channels.wecom_crypto import CallbackCryptoError, MsgCrypt, sha1_signature, signature_matches
from engine.store.types import utcnow

log = logging.getLogger("journeys.api.callbacks")

MAX_PARAM_CHARS = 128  # timestamp, nonce, signature: the vendors send a few dozen characters


async def _sweep_forever(app: FastAPI) -> None:
    """Process callbacks stored but not processed (a crash, the database
    down mid-way), every ``callback_retry_seconds``."""
    settings: ApiSettings = app.state.settings
    every = settings.callback_retry_seconds
    while True:
        await asyncio.sleep(every)
        if getattr(app.state, "store", None) is None:
            continue
        try:
            await processor_of(app).sweep(older_than=timedelta(seconds=every))
        except Exception:  # noqa: BLE001 - the next round tries again
            log.exception("sweep of stored callbacks failed")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's own lifespan (FastAPI nests an included
    router's), so the store is open here."""
    every = app.state.settings.callback_retry_seconds
    sweeper = asyncio.create_task(_sweep_forever(app)) if every > 0 else None
    try:
        yield
    finally:
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.gather(sweeper, return_exceptions=True)
        processor = getattr(app.state, "callback_processor", None)
        if processor is not None:
            await processor.aclose()


router = APIRouter(prefix="/v1/callbacks", tags=["callbacks"], lifespan=lifespan)


def processor_of(app: Any) -> CallbackProcessor:
    """The app's processor, made on first use (the app wires its services
    when the store opens; this one needs the store and the dispatcher)."""
    state = app.state
    processor: CallbackProcessor | None = getattr(state, "callback_processor", None)
    if processor is None or processor.store is not state.store:
        processor = CallbackProcessor(
            state.store, state.settings, state.dispatcher, lambda: getattr(state, "client", None)
        )
        state.callback_processor = processor
    return processor


async def get_processor(request: Request, _store: StoreDep) -> CallbackProcessor:
    return processor_of(request.app)


ProcessorDep = Annotated[CallbackProcessor, Depends(get_processor)]
Param = Annotated[str | None, Query(max_length=MAX_PARAM_CHARS)]
# what a callback may answer besides the app-wide 4xx
POSTED = {
    200: {"content": {"text/plain": {}}},
    413: {"model": ProblemOut, "description": "Body larger than callback_max_body_bytes"},
    503: {"model": ProblemOut, "description": "Not stored (the database is down) or misconfigured; the vendor retries"},
}


def _required(**params: str | None) -> dict[str, str]:
    missing = [name for name, value in params.items() if not value]
    if missing:
        raise Problem(400, f"missing query parameter(s): {', '.join(missing)}", kind="callback-params")
    return {name: str(value) for name, value in params.items()}


def _refused(exc: CallbackCryptoError) -> Problem:
    status = 403 if exc.code in ("bad-signature", "bad-receiver") else 400
    return Problem(status, str(exc), kind=f"callback-{exc.code}")


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused past ``limit`` before it is read whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise Problem(413, f"a callback body is at most {limit} bytes", kind="body-too-large", limit_bytes=limit)
    body = await request.body()
    if len(body) > limit:
        raise Problem(413, f"a callback body is at most {limit} bytes", kind="body-too-large", limit_bytes=limit)
    return body


def _parse(data: bytes, what: str) -> messages.Message:
    try:
        return messages.parse(data)
    except messages.MessageError as exc:
        raise Problem(400, f"{what}: {exc}", kind="callback-malformed") from exc


async def _accept(processor: CallbackProcessor, *, vendor: str, receiver: str, message: messages.Message) -> None:
    try:
        await processor.accept(vendor=vendor, receiver=receiver, message=message)
    except SQLAlchemyError as exc:
        log.exception("could not store a %s callback", vendor)
        raise Problem(
            503, "the callback could not be stored; the vendor will retry it", kind="store-unavailable"
        ) from exc


# ---------------------------------------------------------------- WeCom


def _wecom_crypt(settings: ApiSettings) -> MsgCrypt:
    cfg = settings.channels.wecom
    if not cfg.callback_configured:
        raise Problem(
            404,
            "WeCom callbacks are not configured: set channels.wecom.corp_id, callback_token and callback_aes_key",
            kind="callbacks-not-configured",
        )
    assert cfg.callback_token is not None and cfg.callback_aes_key is not None and cfg.corp_id
    try:
        return MsgCrypt(cfg.callback_token.get_secret_value(), cfg.callback_aes_key.get_secret_value(), cfg.corp_id)
    except CallbackCryptoError as exc:
        raise Problem(
            503, f"the configured WeCom callback key is unusable: {exc}", kind="callbacks-misconfigured"
        ) from exc


@router.get(
    "/wecom",
    response_class=PlainTextResponse,
    summary="WeCom URL verification: answers the decrypted echostr",
    responses={200: {"content": {"text/plain": {}}}},
)
async def wecom_verify(
    settings: SettingsDep,
    msg_signature: Param = None,
    timestamp: Param = None,
    nonce: Param = None,
    echostr: Annotated[str | None, Query(max_length=1024)] = None,
) -> PlainTextResponse:
    crypt = _wecom_crypt(settings)
    p = _required(msg_signature=msg_signature, timestamp=timestamp, nonce=nonce, echostr=echostr)
    # a '+' of the base64 arrives as a space when the sender did not encode it
    encrypted = p["echostr"].replace(" ", "+")
    try:
        plain = crypt.verify_and_decrypt(p["msg_signature"], p["timestamp"], p["nonce"], encrypted)
    except CallbackCryptoError as exc:
        raise _refused(exc) from exc
    return PlainTextResponse(plain.message.decode("utf-8", "replace"))


@router.post(
    "/wecom",
    response_class=PlainTextResponse,
    summary="WeCom customer-contact events (stored, answered `success`, made into journey events)",
    responses=POSTED,
)
async def wecom_event(
    request: Request,
    settings: SettingsDep,
    processor: ProcessorDep,
    msg_signature: Param = None,
    timestamp: Param = None,
    nonce: Param = None,
) -> PlainTextResponse:
    crypt = _wecom_crypt(settings)
    p = _required(msg_signature=msg_signature, timestamp=timestamp, nonce=nonce)
    envelope = _parse(await _body(request, settings.callback_max_body_bytes), "the body")
    encrypted = messages.text(envelope, "Encrypt")
    if not encrypted:
        raise Problem(400, "the body has no <Encrypt> field", kind="callback-malformed")
    try:
        plain = crypt.verify_and_decrypt(p["msg_signature"], p["timestamp"], p["nonce"], encrypted)
    except CallbackCryptoError as exc:
        raise _refused(exc) from exc
    message = _parse(plain.message, "the decrypted message")
    await _accept(processor, vendor=wecom.VENDOR, receiver=crypt.receiver_id, message=message)
    return PlainTextResponse("success")


# ---------------------------------------------------------------- Official Account


def _oa_config(settings: ApiSettings) -> OfficialAccountConfig:
    cfg = settings.channels.official_account
    if not cfg.callback_configured:
        raise Problem(
            404,
            "Official Account callbacks are not configured: set channels.official_account.app_id and callback_token "
            "(and callback_aes_key for safe mode)",
            kind="callbacks-not-configured",
        )
    return cfg


def _oa_crypt(cfg: OfficialAccountConfig) -> MsgCrypt | None:
    if cfg.callback_aes_key is None:
        return None
    assert cfg.callback_token is not None and cfg.app_id
    try:
        return MsgCrypt(cfg.callback_token.get_secret_value(), cfg.callback_aes_key.get_secret_value(), cfg.app_id)
    except CallbackCryptoError as exc:
        raise Problem(
            503, f"the configured Official Account callback key is unusable: {exc}", kind="callbacks-misconfigured"
        ) from exc


def _oa_signed(cfg: OfficialAccountConfig, signature: str, timestamp: str, nonce: str) -> None:
    """The ``signature`` every Official Account request carries: SHA-1 of
    the sorted token, timestamp and nonce (it does not cover the body)."""
    assert cfg.callback_token is not None
    if not signature_matches(sha1_signature(cfg.callback_token.get_secret_value(), timestamp, nonce), signature):
        raise Problem(403, "signature does not match (wrong token, or forged)", kind="callback-bad-signature")


@router.get(
    "/official-account",
    response_class=PlainTextResponse,
    summary="Official Account server verification: answers echostr when the signature holds",
    responses={200: {"content": {"text/plain": {}}}},
)
async def official_account_verify(
    settings: SettingsDep,
    signature: Param = None,
    timestamp: Param = None,
    nonce: Param = None,
    echostr: Annotated[str | None, Query(max_length=1024)] = None,
) -> PlainTextResponse:
    cfg = _oa_config(settings)
    p = _required(signature=signature, timestamp=timestamp, nonce=nonce, echostr=echostr)
    _oa_signed(cfg, p["signature"], p["timestamp"], p["nonce"])
    return PlainTextResponse(p["echostr"])


@router.post(
    "/official-account",
    response_class=PlainTextResponse,
    summary="Official Account events, plaintext or safe (AES) mode (stored, answered `success`, then processed)",
    responses=POSTED,
)
async def official_account_event(
    request: Request,
    settings: SettingsDep,
    processor: ProcessorDep,
    signature: Param = None,
    timestamp: Param = None,
    nonce: Param = None,
    encrypt_type: Param = None,
    msg_signature: Param = None,
    openid: Param = None,
) -> PlainTextResponse:
    cfg = _oa_config(settings)
    p = _required(signature=signature, timestamp=timestamp, nonce=nonce)
    _oa_signed(cfg, p["signature"], p["timestamp"], p["nonce"])
    crypt = _oa_crypt(cfg)
    body = await _body(request, settings.callback_max_body_bytes)
    mode = (encrypt_type or "raw").lower()
    if mode == "aes":
        if crypt is None:
            raise Problem(
                400,
                "an encrypted (safe mode) message, but channels.official_account.callback_aes_key is not set",
                kind="callbacks-misconfigured",
            )
        if not msg_signature:
            raise Problem(400, "missing query parameter(s): msg_signature", kind="callback-params")
        envelope = _parse(body, "the body")
        encrypted = messages.text(envelope, "Encrypt")
        if not encrypted:
            raise Problem(400, "the body has no <Encrypt> field", kind="callback-malformed")
        try:
            plain = crypt.verify_and_decrypt(msg_signature, p["timestamp"], p["nonce"], encrypted)
        except CallbackCryptoError as exc:
            raise _refused(exc) from exc
        message = _parse(plain.message, "the decrypted message")
    elif mode == "raw":
        if crypt is not None and not cfg.callback_allow_plaintext:
            raise Problem(
                403,
                "safe mode is configured (callback_aes_key): a plaintext message is refused "
                "(set callback_allow_plaintext while switching modes)",
                kind="callback-plaintext-refused",
            )
        _fresh(p["timestamp"], settings.callback_max_age_seconds)
        message = _parse(body, "the body")
    else:
        raise Problem(400, f"encrypt_type {encrypt_type!r} is not known (aes, or none for plaintext)")
    if openid and messages.text(message, "FromUserName") not in ("", openid):
        raise Problem(400, "the openid parameter and the message's FromUserName differ", kind="callback-malformed")
    assert cfg.app_id
    await _accept(processor, vendor=official_account.VENDOR, receiver=cfg.app_id, message=message)
    return PlainTextResponse("success")


def _fresh(timestamp: str, max_age: int) -> None:
    """A plaintext message's signature does not cover its body: one seen
    once must not carry another body later."""
    if not timestamp.isdigit() or abs(utcnow().timestamp() - int(timestamp)) > max_age:
        raise Problem(
            403,
            f"the timestamp is more than {max_age} s from now: a plaintext callback is accepted fresh only",
            kind="callback-stale",
        )


# ---------------------------------------------------------------- what arrived


class ReceiptOut(BaseModel):
    id: str
    vendor: str
    kind: str
    received_at: datetime
    processed_at: datetime | None
    attempts: int
    outcome: dict[str, Any] | None
    last_error: str | None


@router.get(
    "/receipts",
    response_model=list[ReceiptOut],
    dependencies=[Depends(viewer)],
    summary="The latest callbacks received, newest first, with what came of each",
)
async def recent_receipts(
    store: StoreDep,
    vendor: Annotated[str | None, Query(pattern="^(wecom|official_account)$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[ReceiptOut]:
    rows = await asyncio.to_thread(receipts.recent, store, vendor=vendor, limit=limit)
    return [
        ReceiptOut(
            id=r.id,
            vendor=r.vendor,
            kind=r.kind,
            received_at=r.received_at,
            processed_at=r.processed_at,
            attempts=r.attempts,
            outcome=r.outcome,
            last_error=r.last_error,
        )
        for r in rows
    ]
