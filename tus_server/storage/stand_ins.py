"""Stand-ins settled: a finished upload's stand-in pieces copied to their chunks' own names.

A stand-in (parts.py) holds a complete chunk whose PUT got no answer in time, usually because
MinIO keeps that key locked after the node coordinating its last write died (a minute or two,
until its stale-lock sweep). Readers read the stand-in in the chunk's place, so nothing waits
for this; it only brings the upload back to the layout every tool expects (`<name>.partXofY`).

Why it is safe: the newest generation lists the stand-in, so no generation trusts the chunk's
own name for that index (it lay past the offset of every generation before the stand-in's),
and whatever is there may be replaced. The copy needs no lock: a finished upload has no
writer, and two processes copying at once write the same bytes (each checked against the
stand-in's CRC32C, which MinIO verifies on arrival). The generation that drops the stand-in
is committed under the upload's lock, after the copy and only if the state still lists it;
the piece is deleted after that commit, and a reader still holding the older state then finds
it gone and reads the chunk's own name (reader.py). A copy that races a termination is
removed again once the state says the upload is gone.
"""
from __future__ import annotations

import logging

import urllib3

from .generations import Generations
from .layout import chunk_count, chunk_key
from .objects import CRC32C_HEADER, Objects
from .parts import Parts
from .store import StorageUnavailable, UploadInfo

log = logging.getLogger("tus_server.store")


def copy_to_chunks(objects: Objects, info: UploadInfo) -> list[list]:
    """Put each stand-in's bytes (at most one chunk in memory) under its chunk's own name; the
    stand-ins done, in order, stopping at the first that MinIO does not take yet."""
    # Not TUS_CHUNK_ANSWER_TIMEOUT's 0 (stand-ins only): the copy has to try the chunk's name.
    timeout = urllib3.Timeout(connect=3.0, read=objects.settings.chunk_answer_timeout or 3.0)
    prefix = objects.location(info.id)[1]
    done = []
    for stand_in in info.stand_ins:
        start, end, name, crc = stand_in
        key = prefix + chunk_key_of(info, stand_in)
        try:
            data, _ = objects.read_object(info.id, name)
            if data is None:  # settled meanwhile by another process
                break
            headers = Parts.headers(data)
            if len(data) != end - start or headers[CRC32C_HEADER] != crc:
                log.error("stand-in differs from its state upload_id=%s key=%s", info.id, name)
                break
            etag = objects.put_if(info.id, key, data, headers, if_none_match=True,
                                  timeout=timeout)
            if etag is None:  # left there by the PUT that got no answer (or an older writer)
                found = objects.object_etag(info.id, key)
                etag = found and objects.put_if(info.id, key, data, headers, if_match=found,
                                                timeout=timeout)
        except StorageUnavailable as exc:
            log.info("stand-in not settled yet upload_id=%s key=%s: %s", info.id, key, exc)
            break
        if not etag:
            break
        done.append(stand_in)
    return done


def chunk_key_of(info: UploadInfo, stand_in: list) -> str:
    """The name of the chunk a stand-in holds (relative to the upload's prefix)."""
    total = chunk_count(info.length or 0, info.chunk_size)
    return chunk_key(info.filename, stand_in[0] // info.chunk_size + 1, total)


def drop_settled(generations: Generations, info: UploadInfo, done: list[list]) -> list[str]:
    """Commit the state without the stand-ins in `done` (the caller holds the lock and has
    just read `info`); the piece and generation names to delete now. Nothing when the state
    no longer lists them all."""
    if not done or any(stand_in not in info.stand_ins for stand_in in done):
        return []
    base = info.version or 0
    info.stand_ins = [stand_in for stand_in in info.stand_ins if stand_in not in done]
    info.writer = None
    last = generations.commit(info, info.seen)
    return [stand_in[2] for stand_in in done] + generations.prune_names(base, last)
