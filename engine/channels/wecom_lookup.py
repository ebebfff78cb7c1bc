"""Finding the ``add_msg_template`` task an ambiguous attempt may have made.

``add_msg_template`` takes no idempotency key and an attempt whose answer was
lost never learnt its ``msgid``, so the task is looked for by what it holds:

1. ``POST /cgi-bin/externalcontact/get_groupmsg_list_v2``
   ``{chat_type, start_time, end_time, filter_type: 0, limit, cursor}`` →
   ``group_msg_list: [{msgid, create_type, text: {content}, attachments,
   create_time}]`` — enterprise-created (企业发表, what the API creates) mass
   messages in a window of at most one month; API-created ones carry no
   ``creator``, so the sender cannot narrow the list;
2. candidates: the same text, and attachments of the same kinds (``msgtype``
   in order; WeCom may normalise media fields, so those are not compared);
3. each candidate's tasks (``get_groupmsg_task``; only the sender's when one
   was named) and their recipients (``get_groupmsg_send_result``, which lists
   every recipient, unsent ones with status 0): the task is ours if our
   external contact / group chat is among them.

What this cannot tell apart: two deliveries of the very same text to the same
recipient within the window (the same step of two runs, or an admin's
console mass message). Reconciling then takes the other one's task for this
delivery — the recipient gets one message where two were due, never two
where one was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

# Both clocks (ours, WeCom's create_time) may be off by this much.
CLOCK_SKEW = timedelta(minutes=5)
MAX_WINDOW = timedelta(days=30)  # get_groupmsg_list_v2 refuses more than a month
LIST_PAGE_LIMIT = 100  # get_groupmsg_list_v2's maximum
ENTERPRISE_CREATED = 0  # filter_type / create_type: 企业发表

ChatType = Literal["single", "group"]


class PagedClient(Protocol):
    async def pages(self, path: str, body: dict[str, Any], key: str, *, limit: int = ...) -> list[dict[str, Any]]: ...


def attachment_kinds(attachments: object) -> list[str]:
    if not isinstance(attachments, list):
        return []
    return [str(a.get("msgtype")) for a in attachments if isinstance(a, dict)]


def window(started: datetime, now: datetime) -> tuple[int, int]:
    """``(start_time, end_time)`` in Unix seconds around the attempts."""
    until = now + CLOCK_SKEW
    since = max(started - CLOCK_SKEW, until - MAX_WINDOW)
    return int(since.timestamp()), int(until.timestamp())


async def find_task(
    client: PagedClient,
    *,
    chat_type: ChatType,
    recipient: str,
    content: str,
    attachments: Sequence[Any] | None,
    sender: str | None,
    started: datetime,
    now: datetime,
) -> str | None:
    """The ``msgid`` of our task, or None. Raises ``ChannelError`` when WeCom
    cannot be asked."""
    start_time, end_time = window(started, now)
    listed = await client.pages(
        "cgi-bin/externalcontact/get_groupmsg_list_v2",
        {"chat_type": chat_type, "start_time": start_time, "end_time": end_time, "filter_type": ENTERPRISE_CREATED},
        "group_msg_list",
        limit=LIST_PAGE_LIMIT,
    )
    kinds = attachment_kinds(list(attachments or []))
    candidates = sorted(
        (
            item
            for item in listed
            if (item.get("text") or {}).get("content", "") == content
            and attachment_kinds(item.get("attachments")) == kinds
        ),
        key=lambda item: int(item.get("create_time") or 0),
    )
    id_key = "external_userid" if chat_type == "single" else "chat_id"
    for item in candidates:
        msgid = str(item["msgid"])
        tasks = await client.pages("cgi-bin/externalcontact/get_groupmsg_task", {"msgid": msgid}, "task_list")
        for task in tasks:
            if sender is not None and task.get("userid") != sender:
                continue
            results = await client.pages(
                "cgi-bin/externalcontact/get_groupmsg_send_result",
                {"msgid": msgid, "userid": task["userid"]},
                "send_list",
            )
            if any(result.get(id_key) == recipient for result in results):
                return msgid
    return None
