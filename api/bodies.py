"""Request bodies, read once and bounded, before any route sees them.

``BodyLimits`` is a pure-ASGI middleware in front of every route. In order:

1. **Auth from headers first.** A compressed body (``Content-Encoding:
   gzip``/``deflate``) is only inflated for a request whose headers carry a
   known key (HTTP Basic write key, ``Authorization: Bearer``/``X-API-Key``,
   or the console cookie with its header): a stranger's gzip bomb costs us
   nothing but a 401. A ``/v1`` request whose header key is unknown is
   answered 401 before its body is read. Uncompressed Segment bodies may still
   carry ``writeKey`` inside (Segment allows it); those are read under the raw
   cap below and authenticated by the route.
2. **Streamed caps.** ``Content-Length`` above ``max_body_bytes`` is a 413
   without reading; a chunked body is counted as it arrives and refused at the
   same limit; a compressed body is inflated chunk by chunk with
   ``zlib.decompressobj(...).decompress(data, max_length)`` and refused once
   the *inflated* bytes pass the limit, so memory stays within about one limit
   whatever the compression ratio.
3. **Valid Unicode.** JSON may spell a lone surrogate (``"\\ud83d"``), which
   Python keeps as a ``str`` that later cannot be encoded (profile pages and
   dispatch then fail for good). A body holding one anywhere (key or value)
   is a 400 naming its JSON path, before any route stores anything.

The route then gets the plain body (``Content-Encoding`` removed,
``Content-Length`` set), exactly as if the client had sent it uncompressed.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import problems
from api.deps import basic_username, presented_key, resolve_api_key

# ``\udXXX`` escapes for U+D800..U+DFFF, or those code points encoded as raw
# (invalid) UTF-8, which ``json.loads`` on bytes lets through ("surrogatepass").
_MAYBE_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}|\xed[\xa0-\xbf]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS}


class BodyRefused(Exception):
    """Why a body is not handed on: the problem answer to send instead."""

    def __init__(self, status: int, detail: str, *, kind: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.extra = extra


def too_large(limit: int, what: str) -> BodyRefused:
    return BodyRefused(
        413, f"request body larger than {limit} bytes ({what})", kind="body-too-large", limit_bytes=limit
    )


class Inflater:
    """Inflates a gzip/deflate stream fed in chunks, never producing more than
    ``limit`` bytes in total: each ``decompress`` call is told how much it may
    return, and the input it did not get to waits in ``unconsumed_tail``."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.wbits = _WBITS[encoding]
        self.limit = limit
        self.inflated = 0  # bytes produced so far (at most limit + 1)
        self.consumed = 0  # compressed bytes fed so far
        self._z = zlib.decompressobj(self.wbits)

    def feed(self, data: bytes) -> bytes:
        self.consumed += len(data)
        out: list[bytes] = []
        while data:
            try:
                # max_length 0 would mean "no limit": room is always >= 1
                piece = self._z.decompress(data, self.limit - self.inflated + 1)
            except zlib.error as exc:
                raise BodyRefused(400, "the request body is not valid compressed data", kind="bad-encoding") from exc
            self.inflated += len(piece)
            if self.inflated > self.limit:
                raise too_large(self.limit, "decompressed")
            out.append(piece)
            data = self._z.unconsumed_tail
            if self._z.eof and self._z.unused_data:
                data = self._z.unused_data  # a further gzip member (concatenated files)
                self._z = zlib.decompressobj(self.wbits)
        return b"".join(out)

    def finish(self) -> bytes:
        if not self._z.eof:
            raise BodyRefused(400, "the request body is truncated compressed data", kind="bad-encoding")
        return b""


def _spelt(match: re.Match[str]) -> str:
    """A surrogate as its JSON escape, so the path itself can be sent back."""
    return f"\\u{ord(match.group()):04x}"


def lone_surrogate_path(value: Any, root: str = "body") -> str | None:
    """The JSON path (``body.traits.name``, ``body.batch.0.properties.x``) of
    the first string or key holding a lone surrogate, or None. Iterative, so a
    deeply nested body cannot exhaust the stack."""
    stack: list[tuple[str, Any]] = [(root, value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return path
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and _SURROGATE.search(key):
                    return f"{path}.{_SURROGATE.sub(_spelt, key)}"
                stack.append((f"{path}.{key}", child))
        elif isinstance(item, list):
            stack.extend((f"{path}.{i}", child) for i, child in enumerate(item))
    return None


def check_unicode(body: bytes) -> None:
    """400 when the JSON body holds a lone surrogate (a body that is not JSON
    is the route's to refuse)."""
    if not _MAYBE_SURROGATE.search(body):
        return
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return
    path = lone_surrogate_path(parsed)
    if path is not None:
        raise BodyRefused(
            400,
            f"invalid Unicode at {path}: a lone surrogate (half of a UTF-16 pair) is not text",
            kind="invalid-unicode",
            errors=[problems.error_item("invalid_unicode", "lone surrogate", field=path)],
        )


def _header_key_known(request: Request) -> bool | None:
    """True/False when the headers present a key (known or not); None when they present none."""
    key = basic_username(request) or presented_key(request)
    if key is None:
        return None
    return resolve_api_key(request, key) is not None


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


class BodyLimits:
    """The middleware (see the module docstring); ``limit`` is read from the
    app's settings (``max_body_bytes``) on every request."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body, headers = await self._read(scope, receive)
        except BodyRefused as refused:
            extra = dict(refused.extra)
            errors = extra.pop("errors", None)
            headers_out = {"WWW-Authenticate": 'Basic realm="journeys"'} if refused.status == 401 else None
            response = problems.problem_response(
                refused.status,
                refused.detail,
                kind=refused.kind,
                errors=errors,
                headers=headers_out,
                instance=scope.get("path"),
                extra=extra,
            )
            await response(scope, receive, send)
            return
        if body is None:  # the client went away
            return
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        scope["headers"] = headers  # in place: the outer middleware reads the matched route from this dict
        await self.app(scope, replay, send)

    async def _read(self, scope: Scope, receive: Receive) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
        limit: int = self.state.settings.max_body_bytes
        headers = _headers(scope)
        encoding = headers.get("content-encoding", "").strip().lower()
        if encoding == "identity":
            encoding = ""
        if encoding and encoding not in _WBITS:
            raise BodyRefused(415, f"Content-Encoding {encoding!r} is not supported (gzip or deflate)")
        raw_length = headers.get("content-length")
        if raw_length is not None:
            if not raw_length.strip().isdigit():
                raise BodyRefused(400, "Content-Length is not a number")
            if int(raw_length) > limit:
                raise too_large(limit, "Content-Length")
        has_body = raw_length not in (None, "0") or "transfer-encoding" in headers
        if encoding or (has_body and scope.get("path", "").startswith("/v1/")):
            known = _header_key_known(Request(scope))  # only asked when it decides something
            if encoding and not known:
                raise BodyRefused(
                    401, "a compressed body needs a known key in the headers (HTTP Basic write key or Bearer API key)"
                )
            if known is False:
                raise BodyRefused(401, "unknown key")
        inflater = Inflater(encoding, limit) if encoding else None
        parts: list[bytes] = []
        received = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None, []
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > limit:
                raise too_large(limit, "received")
            parts.append(inflater.feed(chunk) if inflater else chunk)
            more = message.get("more_body", False)
        if inflater is not None:
            parts.append(inflater.finish())
        body = b"".join(parts)
        check_unicode(body)
        new_headers = list(scope.get("headers", []))
        if encoding:
            new_headers = [(k, v) for k, v in new_headers if k.lower() not in (b"content-encoding", b"content-length")]
            new_headers.append((b"content-length", str(len(body)).encode()))
        return body, new_headers
