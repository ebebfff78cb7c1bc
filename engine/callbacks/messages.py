"""Callback bodies: the vendors' flat XML, parsed safely and bounded.

Both vendors post ``<xml><Field><![CDATA[value]]></Field>…</xml>``: one
level of fields, a few of which hold a list (a customer group's
``<MemChangeList><Item>…</Item></MemChangeList>``). The body comes from
the internet before it is authenticated (the signature is checked on the
``Encrypt`` field it carries), so it is parsed with ``defusedxml`` — no
DTDs, no entity expansion, no external references — after its size was
checked, and the result is bounded in fields and list items, so a valid but
absurd message cannot become an absurd event.
"""

from __future__ import annotations

from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import fromstring

MAX_FIELDS = 100
MAX_ITEMS = 2000  # a WeCom customer group holds at most 2000 members
MAX_VALUE_CHARS = 4096

Message = dict[str, str | list[str]]


class MessageError(ValueError):
    """The body is not a callback message (malformed, too big, too deep)."""


def parse(body: bytes) -> Message:
    """The fields of ``<xml>…</xml>``: text values, or lists of the
    ``<Item>`` (or other child) texts of a field that has children."""
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise MessageError(f"the body is not well-formed XML: {exc}") from exc
    if root.tag != "xml":
        raise MessageError(f"the root element is <{root.tag}>, not <xml>")
    fields: Message = {}
    children = list(root)
    if len(children) > MAX_FIELDS:
        raise MessageError(f"more than {MAX_FIELDS} fields")
    for child in children:
        fields[child.tag] = _value(child)
    return fields


def _value(element: Element) -> str | list[str]:
    items = list(element)
    if not items:
        return _text(element)
    if len(items) > MAX_ITEMS:
        raise MessageError(f"<{element.tag}> holds more than {MAX_ITEMS} items")
    out: list[str] = []
    for item in items:
        if len(item):
            raise MessageError(f"<{element.tag}> is nested deeper than the vendors' messages are")
        out.append(_text(item))
    return out


def _text(element: Element) -> str:
    text = (element.text or "").strip()
    if len(text) > MAX_VALUE_CHARS:
        raise MessageError(f"<{element.tag}> is longer than {MAX_VALUE_CHARS} characters")
    return text


def text(message: Message, name: str) -> str:
    """A field as text ('' when absent or a list)."""
    value = message.get(name)
    return value if isinstance(value, str) else ""


def items(message: Message, name: str) -> list[str]:
    """A list field's items (a lone value as a list of one)."""
    value = message.get(name)
    if isinstance(value, list):
        return [v for v in value if v]
    return [value] if value else []
