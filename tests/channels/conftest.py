"""Fixtures: the fake vendor HTTP server (one per session, state reset per
test), a real aiosmtpd SMTP server, and a message factory."""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from engine.channels import OutboundMessage

from .vendors import VendorServer, VendorState

SMTP_USER = "journeys"
SMTP_PASSWORD = "smtp-pass"


@pytest.fixture(scope="session")
def vendor_server() -> Iterator[VendorServer]:
    server = VendorServer().start()
    yield server
    server.stop()


@pytest.fixture
def vendor(vendor_server: VendorServer) -> VendorState:
    """Fresh vendor state for each test."""
    return vendor_server.reset()


@pytest.fixture
def base_url(vendor_server: VendorServer) -> str:
    return vendor_server.url


_keys = itertools.count(1)


@pytest.fixture
def make_message() -> Callable[..., OutboundMessage]:
    def make(channel: str, address: str | None, **overrides: Any) -> OutboundMessage:
        fields: dict[str, Any] = {
            "idempotency_key": f"run-abc:step-{next(_keys)}",
            "user_id": "u-1",
            "channel": channel,
            "address": address,
            "template": "welcome",
            "subject": "欢迎",
            "body": "你好，欢迎加入会员！",
            "data": {},
        }
        fields.update(overrides)
        return OutboundMessage(**fields)

    return make


class Inbox:
    """aiosmtpd handler: keeps accepted envelopes; scripted RCPT replies."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.rcpt_replies: dict[str, str] = {}

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _authenticate(
    server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login.decode() == SMTP_USER
        and auth_data.password.decode() == SMTP_PASSWORD
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def smtp_server() -> Iterator[tuple[Controller, Inbox]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield controller, inbox
    controller.stop()


@pytest.fixture
def smtp_auth_server() -> Iterator[tuple[Controller, Inbox]]:
    """Requires AUTH (over plain text: this is a loopback test server)."""
    inbox = Inbox()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=_free_port(),
        authenticator=_authenticate,
        auth_required=True,
        auth_require_tls=False,
    )
    controller.start()
    yield controller, inbox
    controller.stop()
