"""Which final uploads read which partials, in the system bucket:

    finals/<partial id>/<final id>   an empty marker, written before the final is created

A final upload has no chunks of its own: it reads its partials'. So a partial that a final
reads may not be deleted (`finals_of`: the tus DELETE answers 409), and a final whose partials
are gone anyway (retention, removal behind the server's back, a race with the DELETE) can never
be read again: the sweeper removes it (`expire_orphans`). Chosen over copying the partials into
the final (tusd's S3 store does that): a final stays metadata only, created in O(1) and stored
once, and its owner is told plainly what to delete first.
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from .store import UploadInfo, UploadLocked, UploadNotFound
from .system import SystemBucket

log = logging.getLogger("tus_server.usage")
PREFIX = "finals/"
# A marker without its final is a creation in progress for this long, then a leftover.
GRACE = 120.0


def marker(partial_id: str, final_id: str) -> str:
    return f"{PREFIX}{partial_id}/{final_id}"


class Concatenations:
    def __init__(self, system: SystemBucket, ready: Callable[[], None]):
        self.system = system
        self.ready = ready  # the system bucket exists and was indexed once

    def link(self, final_id: str, partial_ids: list[str]) -> None:
        """Before a final upload is created: its partials may not be deleted while it exists."""
        self.ready()
        for partial_id in partial_ids:
            self.system.put(marker(partial_id, final_id), b"{}", None)

    def unlink(self, info: UploadInfo) -> None:
        """After a final upload was removed."""
        for partial_id in info.partials:
            self.system.remove(marker(partial_id, info.id))

    def link_missing(self, finals: list[UploadInfo]) -> None:
        """Markers for finals made before this index existed (the first count)."""
        linked = set(self.system.names(PREFIX))
        for info in finals:
            for partial_id in info.partials:
                if marker(partial_id, info.id) not in linked:
                    self.system.put(marker(partial_id, info.id), b"{}", None)

    def finals_of(self, partial_id: str, store) -> list[str]:
        """The final uploads that read `partial_id` (`store.get` tells which exist: markers of
        removed finals are dropped; a young marker without its final is a creation in
        progress, and counts)."""
        self.ready()
        prefix = f"{PREFIX}{partial_id}/"
        finals = []
        for found in self.system.listing(prefix):
            final_id = found.object_name[len(prefix):]
            try:
                store.get(final_id)
                finals.append(final_id)
                continue
            except UploadNotFound:
                pass
            if found.last_modified and found.last_modified.timestamp() < time.time() - GRACE:
                self.system.remove(found.object_name)
            else:
                finals.append(final_id)
        return finals

    def expire_orphans(self, store) -> list[str]:
        """Remove the final uploads whose partials are gone; the ids removed."""
        self.ready()
        linked: dict[str, list[str]] = {}
        for name in self.system.names(PREFIX):
            partial_id, _, final_id = name[len(PREFIX):].partition("/")
            linked.setdefault(partial_id, []).append(final_id)
        removed = []
        for partial_id, final_ids in linked.items():
            try:
                store.get(partial_id)
                continue
            except UploadNotFound:
                pass
            for final_id in final_ids:
                try:
                    store.terminate(final_id)  # its markers go with it (`Usage.forget`)
                    removed.append(final_id)
                    log.info("swept upload_id=%s (its partial %s is gone)", final_id, partial_id)
                except UploadNotFound:
                    self.system.remove(marker(partial_id, final_id))
                except UploadLocked:
                    continue
        return removed
