from __future__ import annotations

import socket
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message

import pytest
from aiosmtpd.controller import Controller

from engine.channels.config import EmailConfig
from engine.channels.smtp import EmailProvider, message_id_for

from .conftest import SMTP_PASSWORD, SMTP_USER, Inbox

# The AUTH test server speaks plain text on loopback; aiosmtpd warns about it.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")


def provider(controller: Controller, **kw: object) -> EmailProvider:
    cfg = {"host": controller.hostname, "port": controller.port, "from_addr": "crm@shop.example", "timeout_s": 5}
    cfg.update(kw)
    return EmailProvider(EmailConfig.model_validate(cfg))


def parsed(inbox: Inbox, i: int = -1) -> Message:
    content = inbox.envelopes[i].original_content or inbox.envelopes[i].content
    assert isinstance(content, bytes)
    return message_from_bytes(content)


async def test_delivers_to_real_smtp_server(smtp_server: tuple[Controller, Inbox], make_message) -> None:
    controller, inbox = smtp_server
    msg = make_message("email", "li.lei@example.com", subject="会员日特惠")
    result = await provider(controller).send(msg)

    assert result.status == "sent"
    (env,) = inbox.envelopes
    assert env.mail_from == "crm@shop.example" and env.rcpt_tos == ["li.lei@example.com"]
    mail = parsed(inbox)
    assert str(mail["To"]) == "li.lei@example.com"
    assert str(make_header(decode_header(mail["Subject"]))) == "会员日特惠"
    assert mail["Message-ID"] == result.provider_message_id == message_id_for(msg.idempotency_key, "shop.example")
    assert mail.get_payload(decode=True).decode(mail.get_content_charset()).strip() == msg.body


async def test_message_id_is_derived_from_idempotency_key(smtp_server: tuple[Controller, Inbox], make_message) -> None:
    controller, inbox = smtp_server
    p = provider(controller, message_id_domain="mail.journeys.test")
    msg = make_message("email", "a@example.com")
    first = await p.send(msg)
    again = await p.send(msg)
    other = await p.send(make_message("email", "a@example.com"))
    assert first.provider_message_id == again.provider_message_id != other.provider_message_id
    assert [parsed(inbox, i)["Message-ID"] for i in range(3)] == [
        first.provider_message_id,
        first.provider_message_id,
        other.provider_message_id,
    ]
    assert str(first.provider_message_id).endswith("@mail.journeys.test>")


async def test_html_alternative(smtp_server: tuple[Controller, Inbox], make_message) -> None:
    controller, inbox = smtp_server
    await provider(controller).send(make_message("email", "a@example.com", data={"html": "<b>你好</b>"}))
    mail = parsed(inbox)
    assert mail.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in mail.get_payload()] == ["text/plain", "text/html"]


async def test_permanent_rejection_is_final(smtp_server: tuple[Controller, Inbox], make_message) -> None:
    controller, inbox = smtp_server
    inbox.rcpt_replies["nobody@example.com"] = "550 5.1.1 No such user"
    result = await provider(controller).send(make_message("email", "nobody@example.com"))
    assert result.status == "failed" and not result.retryable and "550" in (result.error or "")
    assert inbox.envelopes == []


async def test_temporary_rejection_is_retryable(smtp_server: tuple[Controller, Inbox], make_message) -> None:
    controller, inbox = smtp_server
    inbox.rcpt_replies["busy@example.com"] = "451 4.7.1 Greylisted, try again later"
    result = await provider(controller).send(make_message("email", "busy@example.com"))
    assert result.status == "failed" and result.retryable and "451" in (result.error or "")


async def test_unreachable_server_is_retryable(make_message) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = EmailProvider(EmailConfig(host="127.0.0.1", port=port, from_addr="crm@shop.example", timeout_s=2))
    result = await p.send(make_message("email", "a@example.com"))
    assert result.status == "failed" and result.retryable


async def test_login(smtp_auth_server: tuple[Controller, Inbox], make_message) -> None:
    controller, inbox = smtp_auth_server
    ok = await provider(controller, username=SMTP_USER, password=SMTP_PASSWORD).send(
        make_message("email", "a@example.com")
    )
    assert ok.status == "sent" and len(inbox.envelopes) == 1

    bad = await provider(controller, username=SMTP_USER, password="wrong").send(make_message("email", "a@example.com"))
    assert bad.status == "failed" and not bad.retryable and "535" in (bad.error or "")

    anonymous = await provider(controller).send(make_message("email", "a@example.com"))
    assert anonymous.status == "failed" and not anonymous.retryable and "530" in (anonymous.error or "")
    assert len(inbox.envelopes) == 1


async def test_missing_address_is_final(smtp_server: tuple[Controller, Inbox], make_message) -> None:
    controller, inbox = smtp_server
    result = await provider(controller).send(make_message("email", None))
    assert result.status == "failed" and not result.retryable
    assert inbox.envelopes == []
