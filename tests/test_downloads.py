"""GET /files/<id>: finished uploads streamed back from their chunk objects, and GET /files.

Everything goes through real HTTP to an app on loopback and a real MinIO; storage is checked by
reading MinIO directly.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import time

import pytest
import requests
from werkzeug.http import parse_options_header

from tus_server.storage.generations import KnownGenerations

from .helpers import (
    TUS,
    chunk_objects,
    create_url,
    metadata,
    patch,
    random_bytes,
    read_object,
    upload_id,
)

C = 64 * 1024  # chunk size of the servers in this module


# ------------------------------------------------------------------------------- helpers
def upload(base_url: str, data: bytes, filename: str = "file.bin", filetype=None) -> str:
    """A finished upload of `data` (one PATCH from offset 0, so the digest is known at once)."""
    values = {"filename": filename}
    if filetype is not None:
        values["filetype"] = filetype
    url = create_url(base_url, len(data), metadata(**values))
    if data:
        response = patch(url, 0, data)
        assert response.status_code == 204, response.text
        assert response.headers["Upload-Offset"] == str(len(data))
    return url


def repr_digest_of(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def get_with_digest(url: str, timeout: float = 15.0, **kwargs) -> requests.Response:
    """GET until the response carries Repr-Digest (a background pass may still be running)."""
    deadline = time.monotonic() + timeout
    while True:
        response = requests.get(url, **kwargs)
        if "Repr-Digest" in response.headers or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


def read_all(response: requests.Response) -> tuple[bytes, bool]:
    """The body as far as it came, and whether the transfer failed on the way."""
    received = io.BytesIO()
    try:
        for piece in response.iter_content(64 * 1024):
            received.write(piece)
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError):
        return received.getvalue(), True
    finally:
        response.close()
    return received.getvalue(), False


def key_in_upload(store, uid: str, name: str) -> str:
    _, prefix = store._location(uid)
    return prefix + name


def overwrite_chunk(store, uid: str, name: str, data: bytes, keep_digest: bool) -> None:
    """Replace a chunk object directly in MinIO, behind the server's back.

    MinIO refuses a CRC32C that does not match the bytes, so the replaced object carries no
    CRC32C; with `keep_digest` it carries the original bytes' SHA-256 the way chunks written
    by earlier versions did, so the reader checks the new bytes against the old digest.
    """
    bucket, prefix = store._location(uid)
    original = read_object(store, uid, name)
    metadata = {"sha256": hashlib.sha256(original).hexdigest()} if keep_digest else None
    store.client.put_object(bucket, prefix + name, io.BytesIO(data), len(data), metadata=metadata)


def every_object_in_minio(store) -> list[tuple[str, str]]:
    """Every object, except those of system buckets (instance heartbeats, the hook outbox;
    other tests' own system buckets are named `tusminio-test-...`)."""
    return [(bucket.name, obj.object_name) for bucket in store.client.list_buckets()
            if bucket.name != store.settings.system_bucket
            and not bucket.name.startswith("tusminio-test-")
            for obj in store.client.list_objects(bucket.name, recursive=True)]


class LogRecords(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int = logging.ERROR) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def server_log():
    """Records of the `tus_server` loggers (works with or without pytest's logging plugin)."""
    handler = LogRecords()
    logger = logging.getLogger("tus_server")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture
def small(make_server):
    """A server with 64 KiB chunks, so multi-chunk files stay small."""
    return make_server(chunk_size=C)


# ------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("size", [0, 1, C - 1, C, C + 1, 3 * C + 17],
                         ids=["0", "1", "chunk-1", "chunk", "chunk+1", "3chunks+17"])
def test_get_returns_the_uploaded_bytes_with_their_digest(small, store, size):
    data = random_bytes(size)
    url = upload(small.url, data, "report.pdf", "application/pdf")

    response = get_with_digest(url)

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["Repr-Digest"] == repr_digest_of(data)
    assert response.headers["Content-Length"] == str(size)
    assert response.headers["Content-Type"] == "application/pdf"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["ETag"].startswith('"') and not response.headers["ETag"].startswith("W/")
    assert response.headers["Last-Modified"].endswith(" GMT")
    kind, options = parse_options_header(response.headers["Content-Disposition"])
    assert (kind, options["filename"]) == ("attachment", "report.pdf")
    expected_chunks = -(-size // C)
    assert len(chunk_objects(store, upload_id(url))) == expected_chunks


def test_digest_is_computed_in_the_background_when_the_running_hash_was_lost(small, store):
    data = random_bytes(2 * C + 5)
    url = create_url(small.url, len(data), metadata(filename="two-parts.bin"))
    assert patch(url, 0, data[:C + 3]).status_code == 204
    small.store._hashes.drop(upload_id(url))  # as if another process took the first PATCH
    assert patch(url, C + 3, data[C + 3:]).status_code == 204

    response = get_with_digest(url)

    assert response.content == data
    assert response.headers["Repr-Digest"] == repr_digest_of(data)


def test_content_type_is_octet_stream_unless_filetype_is_a_media_type(small):
    url = upload(small.url, b"abc", "x.bin", "not a type\r\nX-Evil: 1")
    response = requests.get(url)
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert "X-Evil" not in response.headers
    url = upload(small.url, b"abc", "y.bin")
    assert requests.get(url).headers["Content-Type"] == "application/octet-stream"


# ------------------------------------------------------------------------------- ranges
@pytest.fixture
def four_chunks(small):
    data = random_bytes(3 * C + 17)
    url = upload(small.url, data, "ranges.bin")
    etag = requests.get(url).headers["ETag"]
    return url, data, etag


@pytest.mark.parametrize("first,last", [
    (C - 10, C + 9),            # across the first boundary
    (C - 1, 2 * C),             # the tail of chunk 1, all of chunk 2, the head of chunk 3
    (0, 0),                     # the first byte
    (3 * C, 3 * C + 16),        # exactly the last, short chunk
    (5, 3 * C + 16),            # nearly everything
    (2 * C + 100, 2 * C + 200), # inside one chunk
], ids=["boundary", "three-chunks", "first-byte", "last-chunk", "all-but-5", "inside-a-chunk"])
def test_range_is_206_with_exactly_those_bytes(four_chunks, first, last):
    url, data, _ = four_chunks
    response = requests.get(url, headers={"Range": f"bytes={first}-{last}"})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert response.content == data[first:last + 1]
    assert response.headers["Repr-Digest"] == repr_digest_of(data)  # the whole file's digest


def test_range_past_the_end_is_clipped_to_the_file(four_chunks):
    url, data, _ = four_chunks
    response = requests.get(url, headers={"Range": f"bytes={C}-{10 * C}"})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {C}-{len(data) - 1}/{len(data)}"
    assert response.content == data[C:]


@pytest.mark.parametrize("suffix", [1, 17, 18, C + 1, 10 * C])
def test_suffix_range_gives_the_last_bytes(four_chunks, suffix):
    url, data, _ = four_chunks
    response = requests.get(url, headers={"Range": f"bytes=-{suffix}"})
    assert response.status_code == 206
    n = min(suffix, len(data))
    assert response.headers["Content-Range"] == f"bytes {len(data) - n}-{len(data) - 1}/{len(data)}"
    assert response.content == data[-n:]


@pytest.mark.parametrize("start", [0, 1, C, C + 1, 3 * C + 16])
def test_open_range_gives_the_rest_of_the_file(four_chunks, start):
    url, data, _ = four_chunks
    response = requests.get(url, headers={"Range": f"bytes={start}-"})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{len(data) - 1}/{len(data)}"
    assert response.content == data[start:]


@pytest.mark.parametrize("spec", ["bytes={size}-", "bytes={size}-{size}", "bytes={beyond}-"])
def test_unsatisfiable_range_is_416_with_the_size(four_chunks, spec):
    url, data, _ = four_chunks
    header = spec.format(size=len(data), beyond=len(data) + 1000)
    response = requests.get(url, headers={"Range": header})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{len(data)}"


def test_any_range_of_an_empty_file_is_416(small):
    url = upload(small.url, b"", "empty.txt")
    response = requests.get(url, headers={"Range": "bytes=0-0"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */0"


def test_malformed_range_is_ignored(four_chunks):
    url, data, _ = four_chunks
    response = requests.get(url, headers={"Range": "bytes=abc"})
    assert response.status_code == 200
    assert response.content == data


def test_multiple_ranges_get_the_whole_file(four_chunks):
    url, data, _ = four_chunks
    response = requests.get(url, headers={"Range": "bytes=0-1,5-9"})
    assert response.status_code == 200
    assert "Content-Range" not in response.headers
    assert response.content == data


def test_if_range_with_the_current_etag_gives_the_range(four_chunks):
    url, data, etag = four_chunks
    response = requests.get(url, headers={"Range": f"bytes={C}-", "If-Range": etag})
    assert response.status_code == 206
    assert response.content == data[C:]


def test_if_range_with_another_etag_gives_the_whole_file(four_chunks):
    url, data, _ = four_chunks
    response = requests.get(url, headers={"Range": f"bytes={C}-", "If-Range": '"not-this-file"'})
    assert response.status_code == 200
    assert "Content-Range" not in response.headers
    assert response.content == data


def test_if_range_with_a_weak_etag_gives_the_whole_file(four_chunks):
    url, data, etag = four_chunks
    response = requests.get(url, headers={"Range": f"bytes={C}-", "If-Range": "W/" + etag})
    assert response.status_code == 200
    assert response.content == data


def test_if_range_with_the_last_modified_date(four_chunks):
    url, data, _ = four_chunks
    last_modified = requests.get(url).headers["Last-Modified"]
    response = requests.get(url, headers={"Range": "bytes=-5", "If-Range": last_modified})
    assert response.status_code == 206
    assert response.content == data[-5:]
    older = requests.get(url, headers={"Range": "bytes=-5",
                                       "If-Range": "Wed, 21 Oct 2015 07:28:00 GMT"})
    assert older.status_code == 200
    assert older.content == data


def test_if_none_match_with_the_etag_is_304(four_chunks):
    url, _, etag = four_chunks
    response = requests.get(url, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["ETag"] == etag
    other = requests.get(url, headers={"If-None-Match": '"something-else"'})
    assert other.status_code == 200


def test_a_range_reads_only_the_overlapping_bytes_of_the_overlapping_chunks(small, monkeypatch):
    data = random_bytes(20 * C + 123)
    url = upload(small.url, data, "big.bin")
    uid = upload_id(url)
    # Known digest, so no background pass reads chunks meanwhile (a 304 reads none itself).
    assert "Repr-Digest" in requests.get(url, headers={"If-None-Match": "*"}).headers
    reads = []
    real_get_object = small.store.client.get_object

    def recording_get_object(bucket, name, offset=0, length=0, **kwargs):
        if "/.tus/" not in "/" + name:
            reads.append((name.rsplit("/", 1)[-1] if name.startswith(uid) else name,
                          offset, length))
        return real_get_object(bucket, name, offset=offset, length=length, **kwargs)

    monkeypatch.setattr(small.store.client, "get_object", recording_get_object)

    first = 7 * C - 512  # 1 KiB straddling the boundary of chunks 7 and 8
    response = requests.get(url, headers={"Range": f"bytes={first}-{first + 1023}"})

    assert response.status_code == 206
    assert response.content == data[first:first + 1024]
    assert reads == [("big.bin.part7of21", C - 512, 512), ("big.bin.part8of21", 0, 512)]

    reads.clear()
    response = requests.get(url, headers={"Range": "bytes=-100"})
    assert response.content == data[-100:]
    assert reads == [("big.bin.part21of21", 23, 100)]


# ------------------------------------------------------------------------------- file names
@pytest.mark.parametrize("original,safe", [
    ("my holiday photo.jpg", "my holiday photo.jpg"),
    ('say "hi".txt', 'say "hi".txt'),
    ("back\\slash.txt", "slash.txt"),
    ("quote's;semi=colon.txt", "quote's;semi=colon.txt"),
    ("résumé 2026.pdf", "résumé 2026.pdf"),
    ("данные.bin", "данные.bin"),
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\system.ini", "system.ini"),
    ("evil\r\nSet-Cookie: x=1.txt", "evilSet-Cookie: x=1.txt"),
    ("...", "upload"),
])
def test_filenames_give_safe_chunk_keys_and_content_disposition(server, store, original, safe):
    url = upload(server.url, b"contents", original)
    uid = upload_id(url)

    assert chunk_objects(store, uid) == {f"{safe}.part1of1": 8}
    bucket, prefix = store._location(uid)
    for bucket_name, name in every_object_in_minio(store):
        if bucket_name == bucket and name.startswith(prefix):
            continue
        assert store.settings.layout == "prefix" and bucket_name == store.settings.bucket \
            and name.startswith(".tus-index/"), f"object outside the upload: {bucket_name}/{name}"

    response = requests.get(url)
    assert response.status_code == 200
    assert response.content == b"contents"
    assert "Set-Cookie" not in response.headers
    raw_headers = list(response.raw.headers.items())
    assert all("\r" not in v and "\n" not in v for _, v in raw_headers)
    disposition = response.headers["Content-Disposition"]
    disposition.encode("ascii")  # a header value must be ASCII; others go in filename*
    kind, options = parse_options_header(disposition)
    assert kind == "attachment"
    assert options["filename"] == safe  # Werkzeug prefers the decoded filename*
    if safe != safe.encode("ascii", "ignore").decode():
        assert "filename*=UTF-8''" in disposition
        ascii_name = disposition.split('filename=', 1)[1].split(";")[0].strip('"')
        assert ascii_name and not ascii_name.startswith(".")
    assert response.headers["Content-Type"] == "application/octet-stream"


def test_nonascii_name_has_an_ascii_fallback(server):
    url = upload(server.url, b"x", "résumé 2026.pdf")
    disposition = requests.get(url).headers["Content-Disposition"]
    assert 'filename="resume 2026.pdf"' in disposition
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%202026.pdf" in disposition


# ------------------------------------------------------------------------------- integrity
@pytest.mark.parametrize("keep_digest", [True, False], ids=["digest-kept", "digest-dropped"])
def test_altered_first_chunk_is_a_500(small, store, server_log, keep_digest):
    data = random_bytes(2 * C + 1)
    url = upload(small.url, data, "f.bin")
    uid = upload_id(url)
    altered = bytes(b ^ 0xFF for b in data[:C])
    overwrite_chunk(store, uid, "f.bin.part1of3", altered, keep_digest)

    response = requests.get(url)

    assert response.status_code == 500
    assert altered not in response.content
    assert "verification" in response.text
    assert any(uid in m and "chunk=1" in m for m in server_log.messages())


@pytest.mark.parametrize("chunk", [2, 4], ids=["middle-chunk", "short-last-chunk"])
def test_altered_later_chunk_cuts_the_response_off(small, store, server_log, chunk):
    data = random_bytes(3 * C + 17)
    url = upload(small.url, data, "f.bin")
    uid = upload_id(url)
    original = read_object(store, uid, f"f.bin.part{chunk}of4")
    altered = bytes(b ^ 0x01 for b in original)
    overwrite_chunk(store, uid, f"f.bin.part{chunk}of4", altered, keep_digest=True)

    response = requests.get(url, stream=True)
    assert response.status_code == 200  # the headers went out with chunk 1
    body, failed = read_all(response)

    assert failed or len(body) < len(data), "the client must see a failed transfer"
    assert body == data[:len(body)], "no byte that was not stored may be sent"
    assert len(body) <= (chunk - 1) * C
    assert any(uid in m and f"chunk={chunk}" in m for m in server_log.messages())


def test_truncated_chunk_is_detected(small, store):
    data = random_bytes(3 * C)
    url = upload(small.url, data, "t.bin")
    uid = upload_id(url)
    overwrite_chunk(store, uid, "t.bin.part2of3", data[C:2 * C - 10], keep_digest=True)

    body, failed = read_all(requests.get(url, stream=True))

    assert failed or len(body) < len(data)
    assert body == data[:len(body)]


def test_altered_chunk_cuts_the_response_off_under_gunicorn(gunicorn_server, store):
    live = gunicorn_server(chunk_size=C)
    data = random_bytes(4 * C)
    url = upload(live.url, data, "g.bin")
    uid = upload_id(url)
    original = read_object(store, uid, "g.bin.part3of4")
    overwrite_chunk(store, uid, "g.bin.part3of4", original[::-1], keep_digest=True)

    response = requests.get(url, stream=True, timeout=30)
    assert response.status_code == 200
    body, failed = read_all(response)

    assert failed and body == data[:len(body)] and len(body) <= 2 * C
    log = live.log_path.read_text()
    assert "chunk=3" in log
    assert "Traceback" not in log, "a storage fault is one log line"


# ------------------------------------------------------------------------------- not a file
def test_unfinished_upload_is_409_with_offset_and_length(server):
    url = create_url(server.url, 1000, metadata(filename="half.bin"))
    assert patch(url, 0, b"x" * 300).status_code == 204
    response = requests.get(url)
    assert response.status_code == 409
    assert "300" in response.text and "1000" in response.text
    assert "not finished" in response.text


def test_deferred_length_upload_is_409(server):
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    assert patch(url, 0, b"abc").status_code == 204
    response = requests.get(url)
    assert response.status_code == 409
    assert "3 of an unknown number of bytes" in response.text


def test_unknown_upload_is_404(server):
    response = requests.get(server.url + "/files/tus-" + "0" * 32)
    assert response.status_code == 404


@pytest.mark.parametrize("bad_id", ["nope", "tus-XYZ", "tus-" + "a" * 31, "tus-" + "a" * 33,
                                    "..%2F..%2Fetc%2Fpasswd", "TUS-" + "a" * 32])
def test_malformed_id_is_404(server, bad_id):
    assert requests.get(server.url + "/files/" + bad_id).status_code == 404


def test_terminated_upload_is_404(server):
    url = upload(server.url, b"gone soon", "gone.txt")
    assert requests.get(url).status_code == 200
    assert requests.delete(url, headers=TUS).status_code == 204
    assert requests.get(url).status_code == 404


def test_partial_upload_of_a_concatenation_is_403(server):
    url = create_url(server.url, 3, headers={"Upload-Concat": "partial"})
    assert patch(url, 0, b"abc").status_code == 204
    assert requests.get(url).status_code == 403


def test_final_upload_of_a_concatenation_streams_its_partials(small):
    parts = [random_bytes(C + 5), random_bytes(17), random_bytes(2 * C)]
    urls = []
    for part in parts:
        url = create_url(small.url, len(part), headers={"Upload-Concat": "partial"})
        assert patch(url, 0, part).status_code == 204
        urls.append(url)
    final = create_url(small.url, headers={"Upload-Concat": "final;" + " ".join(urls)})
    data = b"".join(parts)

    response = get_with_digest(final)
    assert response.content == data
    assert response.headers["Repr-Digest"] == repr_digest_of(data)
    ranged = requests.get(final, headers={"Range": f"bytes={C}-{C + 30}"})
    assert ranged.status_code == 206
    assert ranged.content == data[C:C + 31]


# ------------------------------------------------------------------------------- listing
def test_listing_is_newest_first_and_paginated(server):
    finished = upload(server.url, b"done", "first.txt")
    time.sleep(0.01)
    unfinished = create_url(server.url, 10, metadata(filename="second.txt"))
    time.sleep(0.01)
    newest = upload(server.url, b"", "third.txt")

    page1 = requests.get(server.url + "/files?per_page=2")
    assert page1.status_code == 200
    body = page1.json()
    assert [u["id"] for u in body["uploads"]] == [upload_id(newest), upload_id(unfinished)]
    # The first page and its `next` cursor count nothing; `?page=N` counts every upload.
    assert body["per_page"] == 2 and "total" not in body
    assert "after=" in body["next"]
    counted = requests.get(server.url + "/files?page=1&per_page=2").json()
    assert counted["total"] == 3 and counted["page"] == 1
    assert [u["id"] for u in counted["uploads"]] == [upload_id(newest), upload_id(unfinished)]
    for entry in body["uploads"]:
        assert {"id", "filename", "size", "offset", "completed", "created", "expires",
                "download_url"} <= set(entry)
    assert body["uploads"][0]["download_url"] == newest
    assert body["uploads"][1]["download_url"] is None
    second = body["uploads"][1]
    assert (second["filename"], second["size"], second["offset"], second["completed"]) == \
        ("second.txt", 10, 0, False)
    assert second["expires"] is None or second["expires"].endswith("Z")

    page2 = requests.get(body["next"]).json()
    assert [u["id"] for u in page2["uploads"]] == [upload_id(finished)]
    assert page2["next"] is None
    entry = page2["uploads"][0]
    assert (entry["filename"], entry["size"], entry["offset"], entry["completed"]) == \
        ("first.txt", 4, 4, True)
    assert entry["download_url"] == finished
    assert entry["created"].endswith("Z")


def test_a_listing_page_lists_only_as_far_as_it_reaches(make_server, store):
    """Prefix layout: the first page (and each `next`) reads index markers only up to the page,
    so its cost does not grow with the uploads stored."""
    server = make_server(layout="prefix", bucket="tus-test-paging")
    ids = [upload_id(create_url(server.url, 5)) for _ in range(7)]
    seen, url = [], server.url + "/files?per_page=3"
    listed = []
    real_list = server.store.client.list_objects

    def list_objects(bucket, *args, **kwargs):
        for obj in real_list(bucket, *args, **kwargs):
            if obj.object_name.startswith(".tus-index/"):
                listed.append(obj.object_name)
            yield obj

    server.store.client.list_objects = list_objects
    while url:
        listed.clear()
        body = requests.get(url).json()
        seen += [u["id"] for u in body["uploads"]]
        assert len(listed) <= 4  # the page and one more to know whether a next page exists
        url = body["next"]
    assert seen == ids[::-1]


def test_listing_reads_no_chunk_objects(server, monkeypatch):
    for name in ("a.bin", "b.bin"):
        upload(server.url, random_bytes(3000), name)
    reads, listings = [], []
    client = server.store.client
    real_get, real_list = client.get_object, client.list_objects

    def get_object(bucket, name, *args, **kwargs):
        reads.append(name)
        return real_get(bucket, name, *args, **kwargs)

    def list_objects(bucket, prefix=None, *args, **kwargs):
        listings.append(prefix)
        return real_list(bucket, prefix, *args, **kwargs)

    monkeypatch.setattr(client, "get_object", get_object)
    monkeypatch.setattr(client, "list_objects", list_objects)
    # State generations are read with the short-timeout client.
    quick = server.store.objects.quick
    real_quick_get = quick.get_object

    def quick_get_object(bucket, name, *args, **kwargs):
        reads.append(name)
        return real_quick_get(bucket, name, *args, **kwargs)

    if quick is not client:
        monkeypatch.setattr(quick, "get_object", quick_get_object)
    # What a process that never saw these uploads reads (this one keeps the generations it
    # wrote in memory, and would read none).
    monkeypatch.setattr(server.store.generations, "known", KnownGenerations())

    assert len(requests.get(server.url + "/files").json()["uploads"]) == 2
    # One LIST and one GET of the newest state generation per upload.
    assert len(reads) == 2 and all("/.tus/info/" in "/" + name for name in reads)
    assert all(prefix == ".tus-index/" or prefix.endswith(".tus/info/") for prefix in listings)
