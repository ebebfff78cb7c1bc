"""Email channel over SMTP, with the standard library's ``smtplib``.

``smtplib`` blocks, so each send runs in a worker thread
(``asyncio.to_thread``); one connection per message keeps failure handling
simple and is ample for journey volumes (bulk mail belongs to an ESP's HTTP
API, which the webhook channel can reach).

SMTP has no idempotency key, so the delivery's key becomes the Message-ID
(``<sha256(key)[:40]@domain>``): a retry after an ambiguous failure carries the
same Message-ID, which mail stores and clients use to collapse duplicates.

Outcome: accepted by the server → sent, ``provider_message_id`` = Message-ID.
SMTP 4xx replies (greylisting, mailbox busy), timeouts and dropped
connections → failed, retryable; 5xx replies (unknown mailbox, refused sender,
bad credentials) → failed, not retryable.

Data keys read: ``data["html"]`` (optional HTML alternative to ``body``).
"""

from __future__ import annotations

import asyncio
import hashlib
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate

from engine.channels._common import failed, missing_address, sent
from engine.channels.base import OutboundMessage, ProviderResult
from engine.channels.config import EmailConfig


def message_id_for(idempotency_key: str, domain: str) -> str:
    """Deterministic Message-ID: the same delivery always gets the same one."""
    return f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]}@{domain}>"


def _smtp_failure(code: int, detail: str) -> ProviderResult:
    return failed(f"SMTP {code}: {detail}", retryable=400 <= code < 500)


class EmailProvider:
    channel = "email"

    def __init__(self, config: EmailConfig) -> None:
        if not config.configured:
            raise ValueError("email needs host and from_addr")
        self.config = config
        assert config.from_addr is not None
        self._domain = config.message_id_domain or config.from_addr.rpartition("@")[2] or "journeys.local"

    def build(self, message: OutboundMessage) -> EmailMessage:
        """The MIME message for ``message``; public so previews can reuse it."""
        em = EmailMessage()
        em["From"] = self.config.from_addr
        em["To"] = message.address
        em["Subject"] = message.subject or message.template
        em["Date"] = formatdate(localtime=False, usegmt=True)
        em["Message-ID"] = message_id_for(message.idempotency_key, self._domain)
        em.set_content(message.body)
        html = message.data.get("html")
        if isinstance(html, str) and html:
            em.add_alternative(html, subtype="html")
        return em

    async def send(self, message: OutboundMessage) -> ProviderResult:
        if not message.address:
            return missing_address(message)
        em = self.build(message)
        message_id = str(em["Message-ID"])
        try:
            await asyncio.to_thread(self._deliver, em, message.address)
        except smtplib.SMTPRecipientsRefused as exc:
            code, detail = next(iter(exc.recipients.values()))
            return _smtp_failure(code, f"recipient refused: {detail.decode(errors='replace')}")
        except smtplib.SMTPResponseException as exc:
            detail = (
                exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            )
            return _smtp_failure(exc.smtp_code, detail)
        except (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionError) as exc:
            return failed(f"SMTP connection problem: {exc!r}", retryable=True)
        except smtplib.SMTPException as exc:
            # e.g. STARTTLS or AUTH not supported: configuration, not luck.
            return failed(f"SMTP error: {exc!r}", retryable=False)
        except OSError as exc:  # DNS failure, refused connection, TLS errors
            return failed(f"SMTP connection problem: {exc!r}", retryable=True)
        return sent(message_id)

    def _deliver(self, em: EmailMessage, to_addr: str) -> None:
        cfg = self.config
        assert cfg.host is not None and cfg.from_addr is not None
        smtp: smtplib.SMTP
        if cfg.security == "tls":
            smtp = smtplib.SMTP_SSL(cfg.host, cfg.port, timeout=cfg.timeout_s, context=ssl.create_default_context())
        else:
            smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout_s)
        with smtp:
            if cfg.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if cfg.username:
                password = cfg.password.get_secret_value() if cfg.password else ""
                smtp.login(cfg.username, password)
            smtp.send_message(em, from_addr=cfg.from_addr, to_addrs=[to_addr])
