"""Structured JSON logs with personal identifiers masked.

Private-domain data is phone numbers, openids and member ids; a log line that
leaks them ends up in a log platform with wider access than the database. So
every record passes ``MaskFilter`` (attached to the handlers ``setup_logging``
installs): mobile numbers keep their first 3 and last 4 digits, emails their
first letter and domain, WeChat openids/unionids their ends, and any value
written as ``phone=…`` / ``"openid": "…"`` (known identifier keys) is masked
whatever it looks like. URL-encoded text (a logged query string) is decoded
first, so ``a%40b.com`` and ``138+0000+1234`` are caught too. ``JsonFormatter`` writes one JSON object per line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

_KEYS = (
    "phone|mobile|email|openid|unionid|member_id|memberId|anonymous_id|anonymousId|userId|app_user_id"
    "|wecom_external_userid|wecom_group_chat_id|miniprogram_openid|writeKey|write_key|value"
)
_KEYED = re.compile(rf"(\b(?:{_KEYS})\b[\"']?\s*[:=]\s*[\"']?)([^\"'&\s,;}}\]]+)")
# Mobile numbers as people type them (13800001234, 138 0000 1234, 138-0000-1234, +86 …;
# 138+0000+1234 is a spaced one in a query string)
_PHONE = re.compile(r"(?<![\d*])(\+?86[- ]?)?(1[3-9]\d)([- +]?)(\d{4})([- +]?)(\d{4})(?!\d)")
# A URL-encoded stretch (``a%40b.com``, ``138+0000+1234``): decoded before masking,
# else ``%40`` hides an email and ``+``/``%20`` a spaced phone from the patterns.
_ENCODED = re.compile(r"[^\s\"']*%[0-9A-Fa-f]{2}[^\s\"']*")
_EMAIL = re.compile(r"\b([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})\b")
_OPENID = re.compile(r"\b(o[A-Za-z0-9_-]{3})[A-Za-z0-9_-]{20,}([A-Za-z0-9_-]{3})\b")

# Attributes every LogRecord has; anything else was passed with ``extra=``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def _mask_value(value: str) -> str:
    if len(value) <= 4:
        return "***"
    if len(value) <= 8:
        return value[:1] + "***" + value[-1:]
    return value[:3] + "***" + value[-3:]


def mask_text(text: str) -> str:
    """Mask identifiers in free text (idempotent: masking twice changes nothing)."""
    if not text:
        return text
    text = _KEYED.sub(lambda m: m.group(1) + (m.group(2) if "***" in m.group(2) else _mask_value(m.group(2))), text)
    if "%" in text:
        text = _ENCODED.sub(lambda m: unquote_plus(m.group()), text)
    text = _PHONE.sub(lambda m: (m.group(1) or "") + m.group(2) + m.group(3) + "****" + m.group(5) + m.group(6), text)
    text = _EMAIL.sub(lambda m: m.group(1) + "***@" + m.group(2), text)
    text = _OPENID.sub(lambda m: m.group(1) + "***" + m.group(2), text)
    return text


def _mask_any(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_any(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_mask_any(v) for v in value]
    return value


class MaskFilter(logging.Filter):
    """Rewrites the record in place: the formatted message and ``extra`` fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple):
            # Uvicorn's AccessFormatter unpacks the args (client, method,
            # path with query, HTTP version, status): collapsed into the
            # message, every request under ``uvicorn 'api.app:create_app'``
            # printed a "Logging error" traceback instead of its line. Each
            # is masked where it is; the query string is all in the path.
            record.args = tuple(mask_text(a) if isinstance(a, str) else a for a in record.args)
        else:
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a bad format string must not lose the line
                message = str(record.msg)
            record.msg, record.args = mask_text(message), None
        for key, value in list(record.__dict__.items()):
            if key not in _STANDARD:
                record.__dict__[key] = _mask_any(value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": mask_text(record.getMessage()),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in out:
                out[key] = _mask_any(value)
        if record.exc_info:
            out["exc"] = mask_text(self.formatException(record.exc_info))
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(level: str = "INFO", *, json_lines: bool = True) -> None:
    """Make every root handler mask identifiers (idempotent). With no handler
    configured yet, install one (JSON lines unless ``json_lines`` is False);
    an embedding program that configured logging keeps its format. Uvicorn's
    loggers propagate to the root so its lines are masked too."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        fmt = "%(asctime)s %(name)s %(levelname)s %(message)s"
        handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(fmt))
        root.addHandler(handler)
        root.setLevel(level.upper())
    for handler in root.handlers:
        if not any(isinstance(f, MaskFilter) for f in handler.filters):
            handler.addFilter(MaskFilter())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if not any(isinstance(f, MaskFilter) for f in handler.filters):
                handler.addFilter(MaskFilter())
