"""A bounded number of heavy requests at once in this process (simulations,
audience previews), taken without waiting: one over the bound is a 503 with
Retry-After at the route, not a queue that grows while clients time out."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field


@dataclass
class Slots:
    limit: int
    busy: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self) -> bool:
        with self._lock:
            if self.busy >= self.limit:
                return False
            self.busy += 1
            return True

    def give(self) -> None:
        with self._lock:
            self.busy -= 1
