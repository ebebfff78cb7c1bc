"""Pause Python's cyclic garbage collector while a big object graph is built.

Parsing a long journey allocates hundreds of thousands of objects (tokens,
tree nodes, IR models) that all stay alive until the end, and none of them is
garbage in a cycle. The collector does not know that: every few thousand
allocations it runs, and every so often it walks the whole heap again, which
made up a quarter to a third of a 10,000-line parse + check. Reference
counting still frees everything as usual; only the search for cycles waits
until the block ends (as Mercurial does with ``util.nogc``). The blocks are
short and do not nest work that would leave cycles behind.

If the collector is already off (someone else paused it, or it is disabled on
purpose), this leaves it alone; it never turns on a collector that was off
when the block started. Another thread that turns it off *during* the block
will find it on again afterwards — a harmless race for code that only ever
pauses it briefly, which is all this project does.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
