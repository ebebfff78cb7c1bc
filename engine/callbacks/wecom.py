"""WeCom (企业微信) customer-contact callbacks as journey events.

WeCom posts these to the URL set under 客户联系 → API → 接收事件服务器
(developer docs, "客户联系回调通知"), every one ``MsgType`` ``event``:

``change_external_contact`` — a customer (``ExternalUserID``) and a staff
member (``UserID``):

============================ ================================= ===========================
``ChangeType``               journey event                     properties
============================ ================================= ===========================
``add_external_contact``     ``add_external_contact``          ``staff``, ``state`` and
                                                               ``placement`` (the "contact
                                                               me" code's ``State``)
``add_half_external_contact`` ``add_half_external_contact``    the same (added without the
                                                               staff member's approval yet)
``edit_external_contact``    ``edit_external_contact``         ``staff``
``del_external_contact``     ``del_external_contact``          ``staff``, ``source``
                                                               (staff removed the customer)
``del_follow_user``          ``del_follow_user``               ``staff`` (the customer
                                                               removed the staff member)
============================ ================================= ===========================

An add makes the customer a contact of that staff member, either removal
ends it (``engine.consent.follow_state`` with ``via`` = ``UserID``): the
customer is out of ``wecom`` once no staff member is left, and in again on
the next add. A half add counts: the customer added the staff member, who
can message them once they accept, and WeCom tells nothing of that. A
hand-over (``del_external_contact`` with ``Source`` ``DELETE_BY_TRANSFER``)
is not a removal: the taker's add comes with it.

``change_external_chat`` ``update`` with ``UpdateDetail`` ``add_member`` /
``del_member`` — one ``joined_group`` / ``left_group`` per external member
of ``MemChangeList`` (staff members are skipped: an id without one of
``external_userid_prefixes``), with ``chat_id``, ``channel`` =
``wecom_group`` and ``join_scene`` (``invited``, ``invite_link``,
``group_qr``) or ``quit_scene`` (``left``, ``removed``).

Every event lands on the person by the ``wecom_external_userid`` identity
and carries ``corp_id`` and ``source`` = ``wecom``. Kept and ignored: group
creation, dismissal and renames (no customer named), ``change_external_tag``
(a corp tag *definition* was created, renamed, deleted or reordered — it
names no customer; a customer's own tags changing comes as
``edit_external_contact``), and every other event.
"""

from __future__ import annotations

from typing import Any

from engine.callbacks.mapping import JourneyEvent, Mapped, kind_of, member_suffix, occurred
from engine.callbacks.messages import Message, items, text

VENDOR = "wecom"
IDENTITY = "wecom_external_userid"
MAX_ID_CHARS = 255  # identities.value

CONTACT_EVENTS = (
    "add_external_contact",
    "add_half_external_contact",
    "edit_external_contact",
    "del_external_contact",
    "del_follow_user",
)
ADDS = frozenset({"add_external_contact", "add_half_external_contact"})
REMOVALS = frozenset({"del_external_contact", "del_follow_user"})  # staff removed the customer, or the other way
HANDED_OVER = "DELETE_BY_TRANSFER"  # del_external_contact's Source when the customer went to another staff member
JOIN_SCENES = {"0": "invited", "1": "invite_link", "3": "group_qr"}
QUIT_SCENES = {"0": "left", "1": "removed"}


def map_message(message: Message, *, corp_id: str, external_prefixes: tuple[str, ...] = ("wm", "wo")) -> Mapped:
    """The journey events in one decrypted WeCom message (pure: the same
    message always maps to the same events, so a receipt can be processed
    again after a crash)."""
    event = text(message, "Event")
    if text(message, "MsgType") != "event":
        return Mapped(kind_of(message), ignored="not an event (WeCom only pushes messages to apps, not to us)")
    if event == "change_external_contact":
        return _contact(message, corp_id)
    if event == "change_external_chat":
        return _chat(message, corp_id, external_prefixes)
    if event == "change_external_tag":
        return Mapped(
            kind_of(message, "Event", "ChangeType"),
            ignored="a corp tag definition changed; it names no customer (a customer's tags change as edit_external_contact)",
        )
    return Mapped(kind_of(message, "Event", "ChangeType"), ignored=f"event {event or '(none)'!r} is not mapped")


def _base(message: Message, corp_id: str) -> dict[str, Any]:
    return {"source": VENDOR, "corp_id": text(message, "ToUserName") or corp_id}


def _contact(message: Message, corp_id: str) -> Mapped:
    change = text(message, "ChangeType")
    kind = kind_of(message, "Event", "ChangeType")
    if change not in CONTACT_EVENTS:
        return Mapped(kind, ignored=f"change_external_contact {change or '(none)'!r} is not mapped")
    external = text(message, "ExternalUserID")
    if not external or len(external) > MAX_ID_CHARS:
        return Mapped(kind, ignored="no usable ExternalUserID")
    props = _base(message, corp_id)
    staff = text(message, "UserID")
    if staff:
        props["staff"] = staff
    placement = None
    if change in ADDS:
        state = text(message, "State")
        if state:
            props["state"] = state
            props["placement"] = state
            placement = state
    # the relation is with one staff member: without a usable UserID it says nothing;
    # a hand-over (在职/离职继承) removes the customer from one staff member as the
    # taker adds them, in either order, so it ends no contact
    handed_over = change == "del_external_contact" and text(message, "Source") == HANDED_OVER
    known = bool(staff) and len(staff) <= MAX_ID_CHARS and change in ADDS | REMOVALS and not handed_over
    following = change in ADDS if known else None
    if change == "del_external_contact" and text(message, "Source"):
        props["source_detail"] = text(message, "Source")
    event = JourneyEvent(
        name=change,
        identifiers=((IDENTITY, external),),
        properties=props,
        occurred_at=occurred(message),
        placement=placement,
        contact=change in ADDS,
        following=following,
        via=staff if following is not None else None,
    )
    return Mapped(kind, [event])


def _chat(message: Message, corp_id: str, prefixes: tuple[str, ...]) -> Mapped:
    change, detail = text(message, "ChangeType"), text(message, "UpdateDetail")
    kind = kind_of(message, "Event", "ChangeType", "UpdateDetail")
    if change != "update" or detail not in ("add_member", "del_member"):
        return Mapped(kind, ignored="a customer group changed without a member joining or leaving")
    chat_id = text(message, "ChatId")
    if not chat_id:
        return Mapped(kind, ignored="no ChatId")
    joined = detail == "add_member"
    members = [m for m in dict.fromkeys(items(message, "MemChangeList")) if len(m) <= MAX_ID_CHARS]
    external = [m for m in members if m.startswith(prefixes)]
    if not external:
        return Mapped(kind, ignored="no external contact among the members that changed (staff only)")
    props = _base(message, corp_id) | {"chat_id": chat_id, "channel": "wecom_group"}
    if joined:
        props["join_scene"] = JOIN_SCENES.get(text(message, "JoinScene"), text(message, "JoinScene") or "unknown")
    else:
        props["quit_scene"] = QUIT_SCENES.get(text(message, "QuitScene"), text(message, "QuitScene") or "unknown")
    at = occurred(message)
    events = [
        JourneyEvent(
            name="joined_group" if joined else "left_group",
            identifiers=((IDENTITY, member),),
            properties=dict(props),
            occurred_at=at,
            suffix=member_suffix(member),
        )
        for member in external
    ]
    return Mapped(kind, events)
