"""Validation: the checksum extension, size limits, what may be uploaded, malformed input."""
from __future__ import annotations

import base64
import hashlib
import os
import zlib

import pytest
import requests
from tusclient import client as tus_client

from .helpers import (
    TUS,
    chunk_objects,
    create,
    create_url,
    head,
    metadata,
    patch,
    sha256,
    stored_file,
    upload_id,
)


def checksum_header(algorithm: str, data: bytes) -> str:
    if algorithm == "crc32":
        digest = zlib.crc32(data).to_bytes(4, "big")
    else:
        digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm} {base64.b64encode(digest).decode()}"


# ----------------------------------------------------------------------------- checksum
@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512", "md5", "crc32"])
def test_right_checksum_is_accepted(server, algorithm):
    data = os.urandom(5000)
    url = create_url(server.url, len(data))
    response = patch(url, 0, data, headers={"Upload-Checksum": checksum_header(algorithm, data)})
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "5000"
    assert requests.get(url).content == data


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "sha512", "md5", "crc32"])
def test_wrong_checksum_is_460_and_offset_stays(server, store, algorithm):
    data = os.urandom(3000)
    url = create_url(server.url, 6000)
    assert patch(url, 0, data).status_code == 204
    response = patch(url, 3000, os.urandom(1000),
                     headers={"Upload-Checksum": checksum_header(algorithm, b"other bytes")})
    assert response.status_code == 460
    assert "checksum" in response.text.lower()
    assert head(url).headers["Upload-Offset"] == "3000"
    assert stored_file(store, upload_id(url))[:3000] == data


def test_wrong_checksum_spanning_three_chunks_rolls_back(make_server, store):
    server = make_server(chunk_size=1000)
    first = os.urandom(1500)
    url = create_url(server.url, 10_000, metadata(filename="span.bin"))
    assert patch(url, 0, first).status_code == 204
    body = os.urandom(3200)  # offset 1500 -> 4700: touches chunks 2, 3, 4 and 5
    response = patch(url, 1500, body, headers={"Upload-Checksum": checksum_header("sha1", b"x")})
    assert response.status_code == 460
    assert head(url).headers["Upload-Offset"] == "1500"
    # Resuming from the old offset overwrites whatever the refused request left behind.
    rest = os.urandom(8500)
    response = patch(url, 1500, rest, headers={"Upload-Checksum": checksum_header("sha256", rest)})
    assert response.status_code == 204 and response.headers["Upload-Offset"] == "10000"
    assert sha256(requests.get(url).content) == sha256(first + rest)
    assert len(chunk_objects(store, upload_id(url))) == 10


def test_unsupported_checksum_algorithm_is_400(server):
    url = create_url(server.url, 10)
    response = patch(url, 0, b"0123456789", headers={"Upload-Checksum": "sha3 AAAA"})
    assert response.status_code == 400
    assert "sha3" in response.text
    assert head(url).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("value", ["sha1", "sha1 not*base64", "sha1  AAAA AAAA"])
def test_malformed_checksum_header_is_400(server, value):
    url = create_url(server.url, 10)
    assert patch(url, 0, b"0123456789", headers={"Upload-Checksum": value}).status_code == 400
    assert head(url).headers["Upload-Offset"] == "0"


def test_checksum_on_creation_with_upload(server):
    data = b"creation body"
    ok = create(server.url, len(data), headers={"Content-Type": "application/offset+octet-stream",
                                                "Upload-Checksum": checksum_header("md5", data)},
                data=data)
    assert ok.status_code == 201 and ok.headers["Upload-Offset"] == str(len(data))
    bad = create(server.url, len(data), headers={"Content-Type": "application/offset+octet-stream",
                                                 "Upload-Checksum": checksum_header("md5", b"no")},
                 data=data)
    assert bad.status_code == 460


def test_tuspy_with_upload_checksum_completes(make_server, tmp_path):
    server = make_server(chunk_size=256 * 1024)
    data = os.urandom(1_000_000)
    path = tmp_path / "checked.bin"
    path.write_bytes(data)
    uploader = tus_client.TusClient(server.files_url()).uploader(
        str(path), chunk_size=300_000, upload_checksum=True)
    uploader.upload()
    assert sha256(requests.get(uploader.url).content) == sha256(data)


# ----------------------------------------------------------------------------- limits
def test_patch_past_max_size_on_deferred_upload_is_413(make_server):
    server = make_server(max_size=1000)
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    assert patch(url, 0, b"a" * 600).status_code == 204
    assert patch(url, 600, b"b" * 401).status_code == 413
    assert head(url).headers["Upload-Offset"] == "600"


def test_chunked_body_past_max_size_on_deferred_upload_is_413(make_server, store):
    server = make_server(max_size=1000)
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    response = patch(url, 0, iter([b"a" * 700, b"b" * 700]))
    assert response.status_code == 413
    assert int(head(url).headers["Upload-Offset"]) <= 1000


# ----------------------------------------------------------------------------- what may be uploaded
def test_allowed_types_accept_matching_types(make_server):
    server = make_server(allowed_types=("image/*", "application/pdf"))
    assert create(server.url, 5, metadata(filename="a.png", filetype="image/png")).status_code == 201
    assert create(server.url, 5, metadata(filename="a.pdf", filetype="application/pdf")).status_code == 201


def test_allowed_types_refuse_other_types_naming_the_rule(make_server):
    server = make_server(allowed_types=("image/*", "application/pdf"))
    response = create(server.url, 5, metadata(filename="a.exe", filetype="application/x-msdownload"))
    assert response.status_code == 415
    assert "TUS_ALLOWED_TYPES" in response.text
    assert create(server.url, 5, metadata(filename="notype")).status_code == 415


def test_require_filename_refuses_uploads_without_one(make_server):
    server = make_server(require_filename=True)
    response = create(server.url, 5)
    assert response.status_code == 400
    assert "TUS_REQUIRE_FILENAME" in response.text
    assert create(server.url, 5, metadata(filename="x.txt")).status_code == 201


def test_oversized_metadata_is_400(make_server):
    server = make_server(max_metadata_size=100)
    response = create(server.url, 5, metadata(filename="x" * 200))
    assert response.status_code == 400
    assert "Upload-Metadata" in response.text


@pytest.mark.parametrize("name, key", [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\windows\\evil.dll", "evil.dll"),
    ("a\r\nb.txt", "ab.txt"),
    ("\x00\x1fctl.bin", "ctl.bin"),
    ("..", "upload"),
    ("résumé 2026.pdf", "résumé 2026.pdf"),
])
def test_filenames_are_reduced_to_safe_base_names(make_server, store, name, key):
    server = make_server(chunk_size=4)
    url = create_url(server.url, 5, metadata(filename=name))
    patch(url, 0, b"12345")
    assert set(chunk_objects(store, upload_id(url))) == {f"{key}.part1of2", f"{key}.part2of2"}


def test_config_exposes_the_rules_to_the_browser(make_server):
    server = make_server(max_size=10_000, allowed_types=("image/*",), chunk_size=4096)
    config = requests.get(server.url + "/config").json()
    assert config["chunkSize"] == 4096
    assert config["maxSize"] == 10_000
    assert config["allowedTypes"] == ["image/*"]
    assert config["endpoint"] == "/files/"


# ----------------------------------------------------------------------------- malformed input
@pytest.mark.parametrize("headers", [
    {"Upload-Length": "12abc"},
    {"Upload-Length": "-5"},
    {"Upload-Length": "5", "Upload-Concat": "something"},
    {"Upload-Length": "5", "Upload-Concat": "final;"},
    {"Upload-Concat": "final;/files/not-an-id"},
])
def test_malformed_creation_headers_are_400_with_text(server, headers):
    response = requests.post(server.files_url(), headers={**TUS, **headers})
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "Traceback" not in response.text and response.text.strip()


def test_patch_with_content_length_past_length_is_refused_before_reading(server, store):
    url = create_url(server.url, 10)
    response = patch(url, 0, b"x" * 11)
    assert response.status_code == 413
    assert chunk_objects(store, upload_id(url)) == {}
