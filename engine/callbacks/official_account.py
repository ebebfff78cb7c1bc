"""WeChat Official Account (公众号) callbacks as journey events and
delivery reports.

The account posts its users' events to the URL under 基本配置 → 服务器配置
(WeChat docs, "接收事件推送"), ``MsgType`` ``event``, the user's
``openid`` in ``FromUserName``:

========================= ===================== ==========================================
``Event``                 becomes               properties
========================= ===================== ==========================================
``subscribe``             ``subscribe``         ``placement`` and ``scene``: the
                                                parametric QR code's scene when the
                                                follow came by one (``EventKey``
                                                ``qrscene_<scene>``, the prefix stripped),
                                                ``ticket``
``SCAN``                  ``qr_scanned``        ``placement``, ``scene`` (``EventKey``,
                                                no prefix: the user already follows),
                                                ``ticket``
``unsubscribe``           ``unsubscribe``       — (and the person is opted out of
                                                ``official_account``: WeChat sends no
                                                template message to a non-follower;
                                                a later ``subscribe`` opts them back in)
``TEMPLATESENDJOBFINISH`` a delivery report     ``MsgID`` is the template send's
                                                ``msgid`` (the ledger's
                                                ``provider_message_id``), ``Status``
                                                ``success`` / ``failed:user block`` /
                                                ``failed: system failed``
========================= ===================== ==========================================

Every event lands on the person by the ``openid`` identity and carries
``source`` = ``official_account``, ``channel`` = ``official_account`` and
``account`` (the account's original id, ``ToUserName``). Users' messages
to the account and the other events (menu clicks, location) are kept as
receipts and ignored.
"""

from __future__ import annotations

from typing import Any

from engine.callbacks.mapping import DeliveryReport, JourneyEvent, Mapped, kind_of, occurred
from engine.callbacks.messages import Message, text

VENDOR = "official_account"
IDENTITY = "openid"
SCENE_PREFIX = "qrscene_"
MAX_ID_CHARS = 255

_FAILURES = {
    "failed:user block": "the user blocks the account's template messages",
    "failed: system failed": "WeChat failed to deliver it (system failure)",
}


def map_message(message: Message) -> Mapped:
    """The journey events or the delivery report in one Official Account
    message (pure, like ``engine.callbacks.wecom.map_message``)."""
    kind = kind_of(message, "Event")
    if text(message, "MsgType") != "event":
        return Mapped(kind, ignored="a user's message to the account, not an event (not modelled)")
    event = text(message, "Event")
    if event == "TEMPLATESENDJOBFINISH":
        return _report(message, kind)
    name = {"subscribe": "subscribe", "unsubscribe": "unsubscribe", "scan": "qr_scanned"}.get(event.lower())
    if name is None:
        return Mapped(kind, ignored=f"event {event or '(none)'!r} is not mapped")
    openid = text(message, "FromUserName")
    if not openid or len(openid) > MAX_ID_CHARS:
        return Mapped(kind, ignored="no usable FromUserName (openid)")
    props: dict[str, Any] = {"source": VENDOR, "channel": VENDOR}
    if text(message, "ToUserName"):
        props["account"] = text(message, "ToUserName")
    placement = None
    if name != "unsubscribe":
        key = text(message, "EventKey")
        scene = key[len(SCENE_PREFIX) :] if key.startswith(SCENE_PREFIX) else key
        if name == "subscribe" and not key.startswith(SCENE_PREFIX):
            scene = ""  # a plain follow: EventKey is empty (or not a scene)
        if scene:
            props["placement"] = scene
            props["scene"] = scene
            placement = scene
        if text(message, "Ticket"):
            props["ticket"] = text(message, "Ticket")
    event_out = JourneyEvent(
        name=name,
        identifiers=((IDENTITY, openid),),
        properties=props,
        occurred_at=occurred(message),
        placement=placement,
        contact=name == "subscribe",
        following={"subscribe": True, "unsubscribe": False}.get(name),
    )
    return Mapped(kind, [event_out])


def _report(message: Message, kind: str) -> Mapped:
    msg_id = text(message, "MsgID") or text(message, "MsgId")
    if not msg_id:
        return Mapped(kind, ignored="a delivery report without MsgID")
    status = text(message, "Status")
    openid = text(message, "FromUserName")
    recipient = ((IDENTITY, openid),) if openid and len(openid) <= MAX_ID_CHARS else ()
    if status == "success":
        report = DeliveryReport(VENDOR, msg_id, "sent", None, recipient)
    else:
        reason = f"{_FAILURES.get(status, 'not delivered')} ({status})"
        report = DeliveryReport(VENDOR, msg_id, "failed", reason, recipient)
    return Mapped(kind, report=report)
