"""WeCom (企业微信) channels: ``wecom`` (1:1 to an external contact),
``wecom_group`` (a customer group) and ``wecom_app`` (app message to staff).

API (https://developer.work.weixin.qq.com/document/, base ``qyapi.weixin.qq.com``):

- ``GET /cgi-bin/gettoken?corpid=&corpsecret=`` → ``{access_token, expires_in}``;
  cached until shortly before expiry, refetched once when a call answers
  40014 (invalid token) / 42001 (expired) / 41001 (missing).
- ``POST /cgi-bin/externalcontact/add_msg_template`` — 1:1:
  ``{chat_type: "single", external_userid: [id], sender?, text: {content}, attachments?}``;
  group: ``{chat_type: "group", chat_id_list: [chat_id], sender, text, attachments?}``.
  Answers ``{msgid, fail_list}``.
- ``POST /cgi-bin/externalcontact/get_groupmsg_task`` ``{msgid, limit, cursor}`` →
  ``task_list: [{userid, status: 0 unsent | 2 sent}]``, and
  ``POST /cgi-bin/externalcontact/get_groupmsg_send_result`` ``{msgid, userid, limit, cursor}`` →
  ``send_list: [{external_userid|chat_id, status: 0 unsent | 1 sent | 2 not a
  contact | 3 already received a mass message}]``.
- ``POST /cgi-bin/message/send`` ``{touser, msgtype: "text", agentid, text,
  enable_duplicate_check, duplicate_check_interval}`` → ``{msgid, invaliduser}``.

``add_msg_template`` does not deliver: it puts a task in the WeCom client of
the staff member(s), who must confirm it. So ``send`` answers ``pending`` with
the ``msgid``, and :meth:`poll_result` later answers sent / failed / pending.
Nothing in that API dedupes a retried call, so a blind retry of an ambiguous
attempt (timeout) could create a second task the staff member sees next to
the first. :meth:`reconcile` looks for the task first (by content, window and
recipient: :mod:`engine.channels.wecom_lookup`, which also says what it cannot
tell apart): found → its current outcome (pending / sent / failed), no new
task; not found once ``reconcile_settle_s`` has passed → send.

Errcodes: 0 ok; -1 system busy, 45009 frequency limit, 45033 concurrency
limit → retryable; anything else (bad ids, no permission, …) → not retryable,
with the errmsg in the error.

Data keys read: ``data["wecom_sender"]`` (staff userid, overrides
``default_sender``), ``data["attachments"]`` (list in WeCom's attachment format:
image / link / miniprogram / video / file).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from engine.channels._common import ChannelError, failed, missing_address, pending, sent
from engine.channels._reconcile import as_utc, could_not_tell, too_recent
from engine.channels._tencent import TencentApiClient
from engine.channels.base import OutboundMessage, ProviderResult
from engine.channels.config import WeComAppConfig, WeComConfig
from engine.channels.wecom_lookup import ChatType, find_task

# get_groupmsg_task: status of a staff member's task.
TASK_SENT = 2
# get_groupmsg_send_result: per-recipient status.
RESULT_UNSENT, RESULT_SENT, RESULT_NOT_FRIEND, RESULT_ALREADY_RECEIVED = 0, 1, 2, 3
_RESULT_REASONS = {
    RESULT_NOT_FRIEND: "the customer is not a contact of the sender",
    RESULT_ALREADY_RECEIVED: "the customer already received a mass message in this period",
}
_PAGE_LIMIT = 1000


class WeComClient(TencentApiClient):
    """The WeCom server API for one (corp_id, secret); share it between providers."""

    vendor = "wecom"
    token_errcodes = frozenset({40014, 42001, 41001})
    retryable_errcodes = frozenset({-1, 45009, 45033})

    def __init__(
        self,
        base_url: str,
        corp_id: str,
        corp_secret: str,
        *,
        client: httpx.AsyncClient | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        super().__init__(base_url, client=client, timeout_s=timeout_s)
        self.corp_id = corp_id
        self._corp_secret = corp_secret

    async def _fetch_token(self) -> tuple[str, float]:
        payload = await self.request(
            "GET", "cgi-bin/gettoken", params={"corpid": self.corp_id, "corpsecret": self._corp_secret}
        )
        self.check(payload, "gettoken", token_endpoint=True)
        return str(payload["access_token"]), float(payload.get("expires_in", 7200))

    async def pages(
        self, path: str, body: dict[str, Any], key: str, *, limit: int = _PAGE_LIMIT
    ) -> list[dict[str, Any]]:
        """All items of a cursor-paginated list endpoint."""
        items: list[dict[str, Any]] = []
        cursor = ""
        while True:
            payload = await self.call(path, {**body, "limit": limit, "cursor": cursor})
            items.extend(payload.get(key) or [])
            cursor = payload.get("next_cursor") or ""
            if not cursor:
                return items

    async def msg_template_outcome(self, msgid: str) -> ProviderResult:
        """Outcome of an ``add_msg_template`` task addressed to one recipient."""
        tasks = await self.pages("cgi-bin/externalcontact/get_groupmsg_task", {"msgid": msgid}, "task_list")
        failures: list[str] = []
        for task in tasks:
            if task.get("status") != TASK_SENT:
                continue
            results = await self.pages(
                "cgi-bin/externalcontact/get_groupmsg_send_result",
                {"msgid": msgid, "userid": task["userid"]},
                "send_list",
            )
            for result in results:
                status = result.get("status")
                if status == RESULT_SENT:
                    return sent(msgid)
                if status in _RESULT_REASONS:
                    failures.append(f"{task['userid']}: {_RESULT_REASONS[status]}")
        still_waiting = not tasks or any(task.get("status") != TASK_SENT for task in tasks)
        if failures and not still_waiting:
            return failed("; ".join(failures), retryable=False, provider_message_id=msgid)
        return pending(msgid)


class _MsgTemplateProvider:
    channel: str

    def __init__(self, config: WeComConfig, client: WeComClient) -> None:
        self.config = config
        self.client = client

    def _sender(self, message: OutboundMessage) -> str | None:
        sender = message.data.get("wecom_sender") or self.config.default_sender
        return str(sender) if sender else None

    def _content(self, message: OutboundMessage) -> dict[str, Any]:
        body: dict[str, Any] = {"text": {"content": message.body}}
        attachments = message.data.get("attachments")
        if attachments:
            body["attachments"] = attachments
        return body

    chat_type: ChatType

    async def reconcile(self, message: OutboundMessage, attempt_started_at: datetime) -> ProviderResult | None:
        """Did an earlier attempt create the task? Its outcome if so (module doc)."""
        if not message.address:
            return None
        started, now = as_utc(attempt_started_at), datetime.now(UTC)
        try:
            msgid = await find_task(
                self.client,
                chat_type=self.chat_type,
                recipient=message.address,
                content=message.body,
                attachments=message.data.get("attachments"),
                sender=self._sender(message),
                started=started,
                now=now,
            )
            if msgid is not None:
                return await self.client.msg_template_outcome(msgid)
        except ChannelError as exc:
            return could_not_tell(self.channel, str(exc))
        return too_recent(self.channel, started, now, self.config.reconcile_settle_s)

    async def poll_result(self, provider_message_id: str) -> ProviderResult:
        """Has the staff member confirmed the task, and did it reach the customer?"""
        try:
            return await self.client.msg_template_outcome(provider_message_id)
        except ChannelError as exc:
            # Polling trouble says nothing about the message: keep it pending.
            return ProviderResult(
                status="pending", provider_message_id=provider_message_id, error=str(exc), retryable=exc.retryable
            )

    async def aclose(self) -> None:
        await self.client.aclose()


class WeComContactProvider(_MsgTemplateProvider):
    """1:1 message to an external contact (客户) through a staff member."""

    channel = "wecom"
    chat_type: ChatType = "single"

    async def send(self, message: OutboundMessage) -> ProviderResult:
        if not message.address:
            return missing_address(message)
        body: dict[str, Any] = {"chat_type": "single", "external_userid": [message.address], **self._content(message)}
        sender = self._sender(message)
        if sender:
            body["sender"] = sender
        try:
            payload = await self.client.call("cgi-bin/externalcontact/add_msg_template", body)
        except ChannelError as exc:
            return exc.result()
        msgid = payload.get("msgid")
        if message.address in (payload.get("fail_list") or []) or not msgid:
            return failed(
                f"wecom: external contact {message.address} cannot be messaged (not a contact of the sender)",
                retryable=False,
                provider_message_id=msgid,
            )
        return pending(str(msgid))


class WeComGroupProvider(_MsgTemplateProvider):
    """Message to a customer group (客户群), confirmed by the group owner."""

    channel = "wecom_group"
    chat_type: ChatType = "group"

    async def send(self, message: OutboundMessage) -> ProviderResult:
        if not message.address:
            return missing_address(message)
        sender = self._sender(message)
        if not sender:
            return failed("wecom_group: no sender (group owner userid) configured", retryable=False)
        body = {"chat_type": "group", "chat_id_list": [message.address], "sender": sender, **self._content(message)}
        try:
            payload = await self.client.call("cgi-bin/externalcontact/add_msg_template", body)
        except ChannelError as exc:
            return exc.result()
        msgid = payload.get("msgid")
        if not msgid:
            return failed(f"wecom_group: no msgid in answer {payload!r}", retryable=False)
        return pending(str(msgid))


class WeComAppProvider:
    """Application message (应用消息) to internal members; delivered at once.

    ``enable_duplicate_check`` makes WeCom drop an identical message to the
    same member within ``duplicate_check_interval_s`` — content-based, but it
    covers the retry-after-timeout case the idempotency key is for.
    """

    channel = "wecom_app"

    def __init__(self, config: WeComAppConfig, client: WeComClient) -> None:
        self.config = config
        self.client = client

    async def send(self, message: OutboundMessage) -> ProviderResult:
        if not message.address:
            return missing_address(message)
        body = {
            "touser": message.address,
            "msgtype": "text",
            "agentid": self.config.agent_id,
            "text": {"content": message.body},
            "enable_duplicate_check": 1,
            "duplicate_check_interval": self.config.duplicate_check_interval_s,
        }
        try:
            payload = await self.client.call("cgi-bin/message/send", body)
        except ChannelError as exc:
            return exc.result()
        invalid = [u for u in str(payload.get("invaliduser") or "").split("|") if u]
        if message.address in invalid:
            return failed(f"wecom_app: invalid user {message.address}", retryable=False)
        return sent(str(payload["msgid"]) if payload.get("msgid") else None)

    async def aclose(self) -> None:
        await self.client.aclose()
