"""tus 1.0.0 core, creation, creation-with-upload, creation-defer-length, termination:
one test per rule of shared/TUS-CHECKLIST.md, with real HTTP against a real MinIO."""
from __future__ import annotations

import base64
import http.client
import io
import os
import socket
from urllib.parse import urlparse

import crc32c
import pytest
import requests

from .helpers import (
    MIB,
    OCTET,
    TUS,
    b64,
    chunk_objects,
    create,
    create_url,
    head,
    leftovers,
    metadata,
    patch,
    sha256,
    stored_file,
    stored_objects,
    upload_id,
)


# ----------------------------------------------------------------------------- core
def test_options_advertises_version_extensions_and_max_size(make_server):
    server = make_server(max_size=123456)
    response = requests.options(server.files_url())
    assert response.status_code == 204
    assert response.headers["Tus-Resumable"] == "1.0.0"
    assert response.headers["Tus-Version"] == "1.0.0"
    extensions = response.headers["Tus-Extension"].split(",")
    for name in ("creation", "creation-with-upload", "creation-defer-length", "termination",
                 "expiration", "checksum", "concatenation"):
        assert name in extensions
    assert response.headers["Tus-Max-Size"] == "123456"
    assert "sha1" in response.headers["Tus-Checksum-Algorithm"].split(",")


def test_options_without_limit_has_no_max_size(make_server):
    server = make_server(max_size=0)  # no limit only when set explicitly; the default is 1 TiB
    response = requests.options(server.files_url())
    assert response.status_code == 204
    assert "Tus-Max-Size" not in response.headers


def test_options_ignores_tus_resumable(server):
    response = requests.options(server.files_url(), headers={"Tus-Resumable": "0.2.2"})
    assert response.status_code == 204


@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "DELETE"])
def test_tus_request_without_tus_resumable_is_412(server, method):
    url = create_url(server.url, 10)
    target = server.files_url() if method == "POST" else url
    response = requests.request(method, target, headers={"Upload-Length": "10", **OCTET,
                                                         "Upload-Offset": "0"}, data=b"")
    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    assert head(url).headers["Upload-Offset"] == "0"  # not processed


def test_unsupported_version_is_412_and_not_processed(server):
    url = create_url(server.url, 5)
    response = patch(url, 0, b"abcde", headers={"Tus-Resumable": "0.2.2"})
    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"
    assert head(url).headers["Upload-Offset"] == "0"


def test_every_tus_response_carries_tus_resumable(server):
    url = create_url(server.url, 3)
    for response in (head(url), patch(url, 0, b"abc"), requests.delete(url, headers=TUS),
                     head(url)):
        assert response.headers.get("Tus-Resumable") == "1.0.0"


def test_x_http_method_override_is_the_method(server):
    url = create_url(server.url, 4)
    response = requests.post(url, data=b"abcd", headers={
        **TUS, **OCTET, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"})
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "4"
    response = requests.post(url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert response.status_code == 204
    assert head(url).status_code == 404


# ----------------------------------------------------------------------------- HEAD
def test_head_reports_offset_length_metadata_and_no_store(server):
    meta = metadata(filename="a.txt", flag=None)
    url = create_url(server.url, 10, meta)
    response = head(url)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Length"] == "10"
    assert response.headers["Upload-Metadata"] == meta
    assert response.headers["Cache-Control"] == "no-store"
    assert response.content == b""


def test_head_on_complete_upload_still_has_offset(server):
    url = create_url(server.url, 3)
    assert patch(url, 0, b"xyz").status_code == 204
    response = head(url)
    assert response.headers["Upload-Offset"] == "3"
    assert response.headers["Upload-Length"] == "3"


def test_head_unknown_upload_is_404_without_offset(server):
    response = head(server.files_url() + "tus-" + "0" * 32)
    assert response.status_code == 404
    assert "Upload-Offset" not in response.headers


@pytest.mark.parametrize("bad_id", ["nope", "tus-XYZ", "tus-" + "a" * 31, "TUS-" + "a" * 32,
                                    "tus-" + "a" * 33, "tus-%2e%2e"])
def test_malformed_upload_ids_are_404(server, bad_id):
    for method in ("HEAD", "PATCH", "DELETE", "GET"):
        response = requests.request(method, server.files_url() + bad_id,
                                    headers={**TUS, **OCTET, "Upload-Offset": "0"})
        assert response.status_code == 404, (method, bad_id)


# ----------------------------------------------------------------------------- creation
def test_post_creates_upload_with_absolute_location(server, store):
    response = create(server.url, 100, metadata(filename="doc.pdf"))
    assert response.status_code == 201
    location = response.headers["Location"]
    parsed = urlparse(location)
    assert parsed.scheme == "http" and parsed.netloc == urlparse(server.url).netloc
    assert parsed.path.startswith("/files/tus-")
    uid = upload_id(location)
    assert len(uid) == 36 and all(c in "0123456789abcdef" for c in uid[4:])
    assert ".tus/info/999999999998" in stored_objects(store, uid)  # generation 1
    if store.settings.layout == "bucket":
        assert store.client.bucket_exists(uid)


def test_upload_ids_are_unique(server):
    ids = {upload_id(create_url(server.url, 1)) for _ in range(20)}
    assert len(ids) == 20


def test_post_without_length_or_defer_is_400(server):
    response = create(server.url)
    assert response.status_code == 400
    assert "Upload-Length" in response.text


@pytest.mark.parametrize("value", ["0", "2", "true", ""])
def test_defer_length_other_than_1_is_400(server, value):
    response = create(server.url, headers={"Upload-Defer-Length": value})
    assert response.status_code == 400


def test_length_and_defer_together_is_400(server):
    response = create(server.url, 10, headers={"Upload-Defer-Length": "1"})
    assert response.status_code == 400


@pytest.mark.parametrize("value", ["-1", "1.5", "abc", "1e3", "0x10", "+5", "18446744073709551616",
                                   "99999999999999999999999"])
def test_malformed_upload_length_is_400(server, value):
    response = create(server.url, headers={"Upload-Length": value})
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")


def test_length_over_max_size_is_413(make_server):
    server = make_server(max_size=1000)
    assert create(server.url, 1001).status_code == 413
    assert create(server.url, 1000).status_code == 201


def test_zero_length_upload_is_complete_at_once(server, store):
    url = create_url(server.url, 0, metadata(filename="empty.txt"))
    response = head(url)
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Length"] == "0"
    assert chunk_objects(store, upload_id(url)) == {}
    download = requests.get(url)
    assert download.status_code == 200 and download.content == b""


def test_empty_upload_metadata_header_is_accepted(server):
    response = create(server.url, 5, "")
    assert response.status_code == 201
    assert "Upload-Metadata" not in head(response.headers["Location"]).headers


def test_metadata_key_without_value_is_echoed(server):
    url = create_url(server.url, 1, "is_confidential,filename " + b64("x.bin"))
    assert head(url).headers["Upload-Metadata"] == "is_confidential,filename " + b64("x.bin")


@pytest.mark.parametrize("raw", ["filename not-base64!", "a b c", "a,,b", "k\u00e9y " + b64("x"),
                                 "dup " + b64("1") + ",dup " + b64("2"), "filename " + b64("x")[:-1]])
def test_invalid_metadata_is_400(server, raw):
    response = requests.post(server.files_url(), headers={
        **TUS, "Upload-Length": "1", "Upload-Metadata": raw.encode("utf-8").decode("latin-1")})
    assert response.status_code == 400


def test_lowercase_header_names_work(server):
    response = requests.post(server.files_url(), headers={"tus-resumable": "1.0.0",
                                                           "upload-length": "3"})
    assert response.status_code == 201
    url = response.headers["Location"]
    response = requests.patch(url, data=b"abc", headers={
        "tus-resumable": "1.0.0", "upload-offset": "0",
        "content-type": "application/offset+octet-stream"})
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "3"


# ----------------------------------------------------------------------------- creation-with-upload
def test_creation_with_upload_stores_body_and_returns_offset(server, store):
    data = os.urandom(3000)
    response = create(server.url, 5000, headers=OCTET, data=data)
    assert response.status_code == 201
    assert response.headers["Upload-Offset"] == "3000"
    url = response.headers["Location"]
    assert head(url).headers["Upload-Offset"] == "3000"
    assert patch(url, 3000, b"z" * 2000).status_code == 204
    assert stored_file(store, upload_id(url)) == data + b"z" * 2000


def test_creation_with_upload_body_without_offset_content_type_is_415(server):
    response = create(server.url, 5, headers={"Content-Type": "text/plain"}, data=b"hello")
    assert response.status_code == 415


def test_creation_with_whole_body_completes(server):
    data = os.urandom(777)
    response = create(server.url, 777, headers=OCTET, data=data)
    assert response.headers["Upload-Offset"] == "777"
    assert requests.get(response.headers["Location"]).content == data


# ----------------------------------------------------------------------------- PATCH
def test_patch_returns_204_with_new_offset(server):
    url = create_url(server.url, 10)
    response = patch(url, 0, b"01234")
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "5"
    assert response.content == b""


def test_patch_without_offset_content_type_is_415(server):
    url = create_url(server.url, 10)
    response = requests.patch(url, data=b"x", headers={**TUS, "Upload-Offset": "0",
                                                       "Content-Type": "application/octet-stream"})
    assert response.status_code == 415
    assert head(url).headers["Upload-Offset"] == "0"


def test_patch_with_wrong_offset_is_409_and_changes_nothing(server, store):
    url = create_url(server.url, 10)
    assert patch(url, 0, b"abcde").status_code == 204
    before = stored_objects(store, upload_id(url))
    response = patch(url, 3, b"XYZ")
    assert response.status_code == 409
    assert "5" in response.text
    assert head(url).headers["Upload-Offset"] == "5"
    assert stored_objects(store, upload_id(url)) == before
    assert stored_file(store, upload_id(url)) == b"abcde"


@pytest.mark.parametrize("value", ["", "-1", "abc", "1.0"])
def test_patch_with_malformed_offset_is_400(server, value):
    url = create_url(server.url, 10)
    response = patch(url, 0, b"a", headers={"Upload-Offset": value})
    assert response.status_code == 400


def test_patch_unknown_upload_is_404(server):
    response = patch(server.files_url() + "tus-" + "f" * 32, 0, b"abc")
    assert response.status_code == 404


def test_patch_past_length_is_413_and_stores_nothing_past_it(server, store):
    url = create_url(server.url, 10)
    assert patch(url, 0, b"12345").status_code == 204
    response = patch(url, 5, b"6789012345")
    assert response.status_code == 413
    assert head(url).headers["Upload-Offset"] == "5"
    assert stored_file(store, upload_id(url)) == b"12345"


def test_chunked_patch_past_length_is_413_and_keeps_only_the_length(server, store):
    url = create_url(server.url, 6)
    response = patch(url, 0, iter([b"abc", b"def", b"ghi"]))
    assert response.status_code == 413
    assert int(head(url).headers["Upload-Offset"]) <= 6
    assert len(stored_file(store, upload_id(url))) <= 6


def test_patch_with_chunked_transfer_encoding(server):
    url = create_url(server.url, 10)
    response = patch(url, 0, iter([b"abc", b"defg", b"hij"]))
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "10"
    assert requests.get(url).content == b"abcdefghij"


def test_patch_with_expect_100_continue(server):
    """Java's tus client sends Expect: 100-continue and waits for the interim answer."""
    url = create_url(server.url, 5)
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=10)
    conn.putrequest("PATCH", parsed.path)
    for name, value in {**TUS, **OCTET, "Upload-Offset": "0", "Content-Length": "5",
                        "Expect": "100-continue"}.items():
        conn.putheader(name, value)
    conn.endheaders()
    conn.sock.settimeout(5)
    interim = conn.sock.recv(100)
    assert interim.startswith(b"HTTP/1.1 100")
    conn.send(b"hello")
    response = conn.getresponse()
    assert response.status == 204
    assert response.getheader("Upload-Offset") == "5"
    conn.close()


def test_empty_patch_on_complete_upload_is_204(server):
    url = create_url(server.url, 2)
    patch(url, 0, b"ab")
    response = patch(url, 2, b"")
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "2"


def test_client_disconnect_mid_patch_keeps_received_bytes(make_server, store):
    server = make_server(chunk_size=64 * 1024)
    url = create_url(server.url, 1_000_000)
    parsed = urlparse(url)
    data = os.urandom(300_000)
    sock = socket.create_connection((parsed.hostname, parsed.port))
    sock.sendall((f"PATCH {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
                  "Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                  "Content-Type: application/offset+octet-stream\r\n"
                  "Content-Length: 1000000\r\n\r\n").encode() + data)
    sock.shutdown(socket.SHUT_WR)
    sock.recv(1000)  # the server answers (or closes) once it saw the end of what we sent
    sock.close()
    offset = _wait_offset(url, 300_000)
    assert offset == 300_000
    assert stored_file(store, upload_id(url))[:offset] == data[:offset]
    assert patch(url, offset, os.urandom(700_000)).status_code == 204


def _wait_offset(url: str, expected: int, timeout: float = 10.0) -> int:
    import time

    deadline = time.monotonic() + timeout
    offset = -1
    while time.monotonic() < deadline:
        offset = int(head(url).headers["Upload-Offset"])
        if offset == expected:
            break
        time.sleep(0.1)
    return offset


# ----------------------------------------------------------------------------- defer length
def test_deferred_upload_head_says_defer_length(server):
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    response = head(url)
    assert response.headers["Upload-Defer-Length"] == "1"
    assert "Upload-Length" not in response.headers
    assert response.headers["Upload-Offset"] == "0"


def test_deferred_chunks_are_renamed_once_length_is_known(make_server, store):
    server = make_server(chunk_size=1000)
    url = create_url(server.url, meta=metadata(filename="d.bin"),
                     headers={"Upload-Defer-Length": "1"})
    uid = upload_id(url)
    data = os.urandom(2500)
    assert patch(url, 0, data[:1500]).status_code == 204
    # The chunk not yet full is a piece: only its own bytes, never re-put.
    assert chunk_objects(store, uid) == {"d.bin.part1of_": 1000}
    pieces = {k: v for k, v in stored_objects(store, uid).items() if k.startswith(".tus/pieces/")}
    assert list(pieces.values()) == [500]
    assert head(url).headers["Upload-Defer-Length"] == "1"
    response = patch(url, 1500, data[1500:], headers={"Upload-Length": "2500"})
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "2500"
    assert chunk_objects(store, uid) == {"d.bin.part1of3": 1000, "d.bin.part2of3": 1000,
                                         "d.bin.part3of3": 500}
    assert not any(k.startswith(".tus/pieces/") for k in stored_objects(store, uid))
    head_response = head(url)
    assert head_response.headers["Upload-Length"] == "2500"
    assert "Upload-Defer-Length" not in head_response.headers
    assert requests.get(url).content == data


def test_deferred_length_is_set_once(server):
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    assert patch(url, 0, b"abc", headers={"Upload-Length": "10"}).status_code == 204
    response = patch(url, 3, b"d", headers={"Upload-Length": "20"})
    assert response.status_code == 400
    assert head(url).headers["Upload-Length"] == "10"


def test_deferred_length_below_offset_is_refused(server):
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    assert patch(url, 0, b"abcdef").status_code == 204
    response = patch(url, 6, b"", headers={"Upload-Length": "3"})
    assert response.status_code in (400, 413)
    assert head(url).headers["Upload-Defer-Length"] == "1"


def test_deferred_length_over_max_size_is_413(make_server):
    server = make_server(max_size=100)
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    assert patch(url, 0, b"", headers={"Upload-Length": "101"}).status_code == 413
    assert patch(url, 0, b"x" * 101).status_code == 413
    assert head(url).headers["Upload-Offset"] == "0"


def test_deferred_upload_declared_equal_to_offset_completes(server):
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    assert patch(url, 0, b"hello").status_code == 204
    assert patch(url, 5, b"", headers={"Upload-Length": "5"}).status_code == 204
    assert requests.get(url).content == b"hello"


# ----------------------------------------------------------------------------- termination
def test_delete_removes_every_object_and_later_requests_404(server, store):
    url = create_url(server.url, 10, metadata(filename="gone.txt"))
    patch(url, 0, b"12345")
    uid = upload_id(url)
    response = requests.delete(url, headers=TUS)
    assert response.status_code == 204
    assert head(url).status_code == 404
    assert patch(url, 5, b"67890").status_code == 404
    assert requests.get(url).status_code == 404
    assert requests.delete(url, headers=TUS).status_code == 404
    if store.settings.layout == "bucket":
        assert not store.client.bucket_exists(uid)
    else:
        assert leftovers(store, uid) == {}


# ----------------------------------------------------------------------------- storage contract
def test_patches_of_any_size_give_server_chunk_boundaries(server, store):
    """1 byte, 3 MiB, 7 MiB and the rest: the same five 5 MiB chunk objects as one upload."""
    data = os.urandom(23 * MIB)
    url = create_url(server.url, len(data), metadata(filename="name"))
    offset = 0
    for size in (1, 3 * MIB, 7 * MIB, len(data)):
        piece = data[offset:offset + size]
        response = patch(url, offset, piece)
        assert response.status_code == 204
        offset += len(piece)
        assert response.headers["Upload-Offset"] == str(offset)
        if offset == len(data):
            break
    uid = upload_id(url)
    assert chunk_objects(store, uid) == {f"name.part{i}of5": (5 if i < 5 else 3) * MIB
                                         for i in range(1, 6)}
    assert sha256(stored_file(store, uid)) == sha256(data)


def test_chunk_objects_carry_their_crc32c_checked_by_minio(make_server, store):
    server = make_server(chunk_size=1000)
    data = os.urandom(2500)
    url = create_url(server.url, 2500, metadata(filename="c.bin"))
    patch(url, 0, data)
    uid = upload_id(url)
    bucket, prefix = store._location(uid)
    for index in range(3):
        piece = data[index * 1000:(index + 1) * 1000]
        response = store.client.get_object(bucket, f"{prefix}c.bin.part{index + 1}of3",
                                           request_headers={"x-amz-checksum-mode": "ENABLED"})
        try:
            assert response.read() == piece
            expected = base64.b64encode(crc32c.crc32c(piece).to_bytes(4, "big")).decode()
            assert response.headers["x-amz-checksum-crc32c"] == expected
        finally:
            response.close()
            response.release_conn()


def test_chunks_written_with_a_sha256_by_earlier_versions_still_download(make_server, store):
    server = make_server(chunk_size=1000)
    data = os.urandom(2500)
    url = create_url(server.url, 2500, metadata(filename="old.bin"))
    patch(url, 0, data)
    uid = upload_id(url)
    bucket, prefix = store._location(uid)
    for index in range(3):  # as the earlier versions wrote them: no CRC32C, a SHA-256 in metadata
        piece = data[index * 1000:(index + 1) * 1000]
        store.client.put_object(bucket, f"{prefix}old.bin.part{index + 1}of3", io.BytesIO(piece),
                                len(piece), metadata={"sha256": sha256(piece)})
    response = requests.get(url)
    assert response.status_code == 200
    assert response.content == data


def test_info_object_offset_is_the_truth(server, store):
    url = create_url(server.url, 10)
    patch(url, 0, b"abcd")
    info = store.get(upload_id(url))
    assert info.offset == 4 and info.length == 10 and info.chunk_size == store.settings.chunk_size


def test_chunked_body_on_finished_upload_is_413_and_changes_nothing(server):
    url = create_url(server.url, 3)
    assert patch(url, 0, b"abc").status_code == 204
    response = patch(url, 3, iter([b"more"]))
    assert response.status_code == 413
    assert head(url).headers["Upload-Offset"] == "3"
    assert requests.get(url).content == b"abc"


def test_several_chunk_puts_in_flight_keep_the_same_layout(make_server, store):
    """TUS_WRITE_BUFFERS=4: three chunk PUTs of one PATCH run at once, same objects and bytes."""
    server = make_server(chunk_size=64 * 1024, write_buffers=4)
    data = os.urandom(40 * 64 * 1024 + 123)
    url = create_url(server.url, len(data), metadata(filename="wide.bin"))
    assert patch(url, 0, data[:1000]).status_code == 204
    response = patch(url, 1000, data[1000:])
    assert response.status_code == 204 and response.headers["Upload-Offset"] == str(len(data))
    uid = upload_id(url)
    assert len(chunk_objects(store, uid)) == 41
    assert sha256(stored_file(store, uid)) == sha256(data)
    assert requests.get(url).headers["Repr-Digest"] == (
        "sha-256=:" + __import__("base64").b64encode(bytes.fromhex(sha256(data))).decode() + ":")
