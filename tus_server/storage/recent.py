"""Objects a process wrote or read lately, kept in memory so that reading them again costs no
request: state generations (generations.py) and pieces (parts.py)."""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Hashable, Optional


class RecentObjects:
    """Stored bytes by (upload id, key): a bounded LRU (least recently used out first), shared
    by the threads or greenlets of one process. At most `limit` objects, or with `by_size`
    at most `limit` bytes; an object larger than a quarter of that is not kept."""

    def __init__(self, limit: int, by_size: bool = False):
        self.limit = limit
        self.by_size = by_size
        self.weight = 0  # objects kept, or their bytes with `by_size`
        self._entries: OrderedDict[tuple[str, Hashable], bytes] = OrderedDict()
        self._guard = threading.Lock()

    def _weigh(self, data: bytes) -> int:
        return len(data) if self.by_size else 1

    def get(self, upload_id: str, key: Hashable) -> Optional[bytes]:
        with self._guard:
            data = self._entries.get((upload_id, key))
            if data is not None:
                self._entries.move_to_end((upload_id, key))
            return data

    def put(self, upload_id: str, key: Hashable, data: bytes) -> None:
        if self._weigh(data) > self.limit // 4:
            return
        with self._guard:
            old = self._entries.pop((upload_id, key), None)
            self.weight += self._weigh(data) - (self._weigh(old) if old is not None else 0)
            self._entries[(upload_id, key)] = data
            while self.weight > self.limit:
                self.weight -= self._weigh(self._entries.popitem(last=False)[1])

    def clear(self) -> None:
        with self._guard:
            self._entries.clear()
            self.weight = 0
