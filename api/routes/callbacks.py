"""Vendor callbacks: ``/v1/callbacks/wecom`` (企业微信 customer contact).

No API key: the vendor authenticates by signing with the callback Token
(and encrypting with the EncodingAESKey) configured on both sides
(``JOURNEYS_CHANNELS__WECOM__CALLBACK_TOKEN`` / ``__CALLBACK_AES_KEY``).
Refusals are problem documents the vendor's console shows an operator
while they set the URL up: 404 not configured, 400 malformed, 403 bad
signature or a message encrypted for another corp, 413 too large, 503 the
database is down (the vendor retries). Everything past the decryption is
``engine.callbacks``'s: the message is stored first, "success" answered,
journey events made off the request path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import SQLAlchemyError

from api.deps import SettingsDep, StoreDep
from api.problems import Problem
from api.settings import ApiSettings
from engine.callbacks import messages, wecom
from engine.callbacks.processing import CallbackProcessor
from engine.channels.wecom_crypto import CallbackCryptoError, MsgCrypt

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
    responses={200: {"content": {"text/plain": {}}}},
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
