"""What a tag name may be, and how a computed one is made safe.

Tags are written by operators (``tag add vip``) and, since ``tag add
"src_" + event.placement``, computed from what a user or an event carries
— text from outside. A tag name is at most ``MAX_TAG_CHARS`` characters of
letters (Chinese too), digits and ``_ - . :``; a computed value has every
other run of characters replaced by ``_`` and is cut to the bound; a value
that leaves nothing is no tag (the run records why). The checker holds the
constant parts of a computed tag to the same rule (E236), and the
interpreter applies it to the values (``make_tag``).
"""

from __future__ import annotations

import re

MAX_TAG_CHARS = 64
_OTHER = re.compile(r"[^\w.:\-]+")
_VALID = re.compile(r"[\w.:\-]+")


def valid_part(text: str) -> bool:
    """Can this text be (part of) a tag name as written?"""
    return bool(text) and _VALID.fullmatch(text) is not None and len(text) <= MAX_TAG_CHARS


def make_tag(text: str) -> str | None:
    """The tag a computed value gives, or None when nothing is left."""
    cleaned = _OTHER.sub("_", text.strip()).strip("_")
    return cleaned[:MAX_TAG_CHARS] or None
