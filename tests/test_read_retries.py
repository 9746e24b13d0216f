"""A download whose chunk read fails tries again before it cuts the response (storage/reader.py).

A chunk that is missing for a moment (as on a MinIO node that just rejoined, which answered
NoSuchKey for chunks written while it was down) is read again and the file arrives whole; one
missing for good cuts the response after the retries, with one log line and no traceback.
"""
from __future__ import annotations

import hashlib
import io
import threading
import time

import requests

from .helpers import random_bytes, read_object, upload_id
from .test_downloads import C, LogRecords, key_in_upload, read_all, server_log, upload  # noqa: F401


def hide_chunk(store, uid: str, name: str, seconds: float) -> threading.Thread:
    """Remove a chunk object and put its bytes back `seconds` later (old-style SHA-256
    metadata, which the reader verifies too), from a thread."""
    bucket = store._location(uid)[0]
    key = key_in_upload(store, uid, name)
    data = read_object(store, uid, name)
    store.client.remove_object(bucket, key)

    def restore():
        time.sleep(seconds)
        store.client.put_object(bucket, key, io.BytesIO(data), len(data),
                                metadata={"sha256": hashlib.sha256(data).hexdigest()})

    thread = threading.Thread(target=restore, daemon=True)
    thread.start()
    return thread


def test_a_chunk_missing_for_a_moment_is_read_again(make_server, store, server_log):
    live = make_server(chunk_size=C)
    data = random_bytes(4 * C + 5)
    url = upload(live.url, data, "back.bin")
    uid = upload_id(url)
    restorer = hide_chunk(store, uid, "back.bin.part3of5", 0.5)

    body, failed = read_all(requests.get(url, stream=True, timeout=30))
    restorer.join()

    assert not failed and body == data
    assert not server_log.messages(), server_log.messages()


def test_a_chunk_missing_for_good_cuts_after_the_retries(make_server, store, server_log):
    live = make_server(chunk_size=C)
    data = random_bytes(4 * C + 5)
    url = upload(live.url, data, "gone.bin")
    uid = upload_id(url)
    bucket = store._location(uid)[0]
    store.client.remove_object(bucket, key_in_upload(store, uid, "gone.bin.part3of5"))

    response = requests.get(url, stream=True, timeout=30)
    assert response.status_code == 200  # the headers went out with chunk 1
    body, failed = read_all(response)

    assert (failed or len(body) < len(data)) and body == data[:len(body)]
    assert len(body) <= 2 * C
    errors = server_log.messages()
    assert len(errors) == 1 and uid in errors[0] and "chunk 3" in errors[0], errors
    assert not any(r.exc_info for r in server_log.records), "a storage fault logged a traceback"


def test_a_first_chunk_missing_for_good_is_503_not_404(make_server, store):
    live = make_server(chunk_size=C)
    data = random_bytes(2 * C)
    url = upload(live.url, data, "first.bin")
    uid = upload_id(url)
    store.client.remove_object(store._location(uid)[0],
                               key_in_upload(store, uid, "first.bin.part1of2"))

    response = requests.get(url, timeout=30)

    assert response.status_code == 503
    assert response.headers["Retry-After"]
