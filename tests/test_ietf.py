"""The IETF draft "Resumable Uploads for HTTP" next to tus 1.0, on the same uploads.

A hand-written client with `requests` speaks the current interop version (8); the real
tus-js-client in Node speaks `ietf-draft-03` (interop 5) and `ietf-draft-05` (interop 6).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from werkzeug.http import parse_options_header

from .helpers import MIB, TUS, head, upload_id
from .minio_process import ROOT
from .test_tus_js_client import node_binary, write_file

DRAFT = {"Upload-Draft-Interop-Version": "8"}
PARTIAL = {"Content-Type": "application/partial-upload"}
SCRIPT = ROOT / "tests" / "js" / "tus_js_ietf.mjs"


def create(base: str, complete: bool = False, data: bytes = b"", **headers) -> requests.Response:
    return requests.post(base + "/files/", data=data, headers={
        **DRAFT, "Upload-Complete": "?1" if complete else "?0", **headers})


def offset_of(url: str) -> requests.Response:
    return requests.head(url, headers=DRAFT)


def append(url: str, offset: int, data: bytes, complete: bool, **headers) -> requests.Response:
    return requests.patch(url, data=data, headers={
        **DRAFT, **PARTIAL, "Upload-Offset": str(offset),
        "Upload-Complete": "?1" if complete else "?0", **headers})


def download_sha256(url: str) -> str:
    response = requests.get(url)
    assert response.status_code == 200, response.text
    return hashlib.sha256(response.content).hexdigest()


def test_hand_written_client_uploads_in_parts_resumes_after_a_cut_and_downloads(server):
    data = os.urandom(5 * MIB + 12345)
    created = create(server.url, **{"Upload-Length": str(len(data))})
    assert created.status_code == 201, created.text
    assert created.headers["Upload-Complete"] == "?0"
    assert created.headers["Upload-Offset"] == "0"
    url = created.headers["Location"]

    state = offset_of(url)
    assert state.status_code == 204
    assert state.headers["Upload-Offset"] == "0"
    assert state.headers["Upload-Complete"] == "?0"
    assert state.headers["Upload-Length"] == str(len(data))
    assert state.headers["Cache-Control"] == "no-store"
    assert "max-size=" in state.headers["Upload-Limit"]
    assert "max-age=" in state.headers["Upload-Limit"]

    first = append(url, 0, data[:MIB], complete=False)
    assert first.status_code == 204, first.text
    assert first.headers["Upload-Offset"] == str(MIB)
    assert first.headers["Upload-Complete"] == "?0"

    # A PATCH dropped halfway: the server keeps what arrived, the client asks and goes on.
    dropped = _raw_draft_patch(url, MIB, data[MIB:MIB + 700_000], announce=2 * MIB)
    assert dropped == 700_000
    deadline = time.monotonic() + 5
    while int(offset_of(url).headers["Upload-Offset"]) != MIB + 700_000:
        assert time.monotonic() < deadline, "the cut PATCH's bytes never showed"
        time.sleep(0.05)

    offset = MIB + 700_000
    rest = append(url, offset, data[offset:], complete=True)
    assert rest.status_code == 204, rest.text
    assert rest.headers["Upload-Complete"] == "?1"
    assert rest.headers["Upload-Offset"] == str(len(data))
    assert download_sha256(url) == hashlib.sha256(data).hexdigest()
    # The same upload through tus 1.0.
    tus_view = head(url)
    assert tus_view.headers["Upload-Offset"] == str(len(data))
    assert tus_view.headers["Upload-Length"] == str(len(data))


def _raw_draft_patch(url: str, offset: int, body: bytes, announce: int) -> int:
    """Send `body` of an announced `announce`-byte append, then drop the connection."""
    parts = urlparse(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    sock.sendall((f"PATCH {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                  f"Upload-Draft-Interop-Version: 8\r\nUpload-Complete: ?0\r\n"
                  f"Upload-Offset: {offset}\r\nContent-Type: application/partial-upload\r\n"
                  f"Content-Length: {announce}\r\n\r\n").encode() + body)
    time.sleep(0.3)
    sock.close()
    return len(body)


def test_mismatching_offset_is_a_409_problem(server):
    url = create(server.url, **{"Upload-Length": "100"}).headers["Location"]
    assert append(url, 0, b"a" * 40, complete=False).status_code == 204
    response = append(url, 10, b"b" * 10, complete=False)
    assert response.status_code == 409
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Upload-Offset"] == "40"
    assert response.headers["Upload-Complete"] == "?0"
    problem = response.json()
    assert problem["type"] == ("https://iana.org/assignments/http-problem-types"
                               "#mismatching-upload-offset")
    assert problem["expected-offset"] == 40
    assert problem["provided-offset"] == 10


@pytest.mark.parametrize("where", ["creation", "append"])
def test_inconsistent_length_is_a_400_problem(server, where):
    if where == "creation":  # Upload-Length 100, but ?1 with 50 bytes says the length is 50
        response = create(server.url, complete=True, data=b"x" * 50, **{"Upload-Length": "100"})
    else:
        url = create(server.url, **{"Upload-Length": "100"}).headers["Location"]
        response = append(url, 0, b"x" * 10, complete=False, **{"Upload-Length": "99"})
    assert response.status_code == 400
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["type"] == ("https://iana.org/assignments/http-problem-types"
                                       "#inconsistent-upload-length")
    assert response.headers["Upload-Complete"] == "?0"


def test_whole_file_in_the_creation_request(server):
    data = os.urandom(300_000)
    response = create(server.url, complete=True, data=data,
                      **{"Content-Type": "text/plain",
                         "Content-Disposition": 'inline; filename="notes.txt"'})
    assert response.status_code == 201, response.text
    assert response.headers["Upload-Complete"] == "?1"
    assert response.headers["Upload-Offset"] == str(len(data))
    url = response.headers["Location"]
    got = requests.get(url)
    assert got.content == data
    assert parse_options_header(got.headers["Content-Disposition"])[1]["filename"] == "notes.txt"
    assert got.headers["Content-Type"].startswith("text/plain")
    # The tus side sees the same metadata, base64-encoded as tus sends it.
    assert head(url).headers["Upload-Metadata"] == ",".join(sorted(
        [f"filename {_b64(b'notes.txt')}", f"filetype {_b64(b'text/plain')}"]))


def test_unknown_length_is_fixed_by_the_completing_append(server):
    url = create(server.url).headers["Location"]
    assert "Upload-Length" not in offset_of(url).headers
    assert append(url, 0, b"a" * 1000, complete=False).status_code == 204
    done = append(url, 1000, b"", complete=True)  # no content: it only completes
    assert done.status_code == 204
    assert done.headers["Upload-Complete"] == "?1"
    assert offset_of(url).headers["Upload-Length"] == "1000"
    assert requests.get(url).content == b"a" * 1000


def test_content_digest_is_checked_and_repr_digest_returned(server):
    data = os.urandom(70_000)
    url = create(server.url, **{"Upload-Length": str(len(data))}).headers["Location"]
    wrong = "sha-256=:" + _b64(hashlib.sha256(b"other").digest()) + ":"
    refused = append(url, 0, data, complete=True, **{"Content-Digest": wrong})
    assert refused.status_code == 400
    assert offset_of(url).headers["Upload-Offset"] == "0"
    right = "sha-256=:" + _b64(hashlib.sha256(data).digest()) + ":"
    done = append(url, 0, data, complete=True, **{"Content-Digest": right})
    assert done.status_code == 204
    assert done.headers["Repr-Digest"] == right  # the whole file is this one request


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_version_selection_and_cancellation(server):
    unknown = requests.post(server.url + "/files/", headers={
        "Upload-Draft-Interop-Version": "3", "Upload-Complete": "?0"})
    assert unknown.status_code == 400
    assert "5, 6, 8" in unknown.text
    options = requests.options(server.url + "/files/", headers=DRAFT)
    assert options.status_code == 204
    assert "max-size=" in options.headers["Upload-Limit"]
    # An append without the draft's media type (from interop 6 on) is refused.
    url = create(server.url, **{"Upload-Length": "10"}).headers["Location"]
    plain = requests.patch(url, data=b"x", headers={**DRAFT, "Upload-Offset": "0",
                                                    "Upload-Complete": "?0"})
    assert plain.status_code == 415
    # Cancellation removes the upload for both protocols.
    assert requests.delete(url, headers=DRAFT).status_code == 204
    assert offset_of(url).status_code == 404
    assert head(url).status_code == 404
    # A tus 1.0 upload is visible to a draft client too.
    tus_url = requests.post(server.url + "/files/", headers={**TUS, "Upload-Length": "5"}
                            ).headers["Location"]
    assert offset_of(tus_url).headers["Upload-Offset"] == "0"
    assert append(tus_url, 0, b"12345", complete=True).headers["Upload-Complete"] == "?1"
    assert requests.get(tus_url).content == b"12345"


def js_draft(endpoint: str, path: Path, protocol: str, stop_after: int,
             upload_url: str = "") -> dict:
    args = [node_binary(), str(SCRIPT), endpoint, str(path), protocol, str(MIB),
            str(stop_after)] + ([upload_url] if upload_url else [])
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"tus-js-client failed:\n{done.stderr}\n{done.stdout}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("protocol, version", [("ietf-draft-03", "5"), ("ietf-draft-05", "6")])
def test_tus_js_client_speaks_the_draft_and_resumes(gunicorn_server, tmp_path, protocol, version):
    app = gunicorn_server()
    path = tmp_path / "draft.bin"
    digest = write_file(path, 40 * MIB)
    first = js_draft(app.url + "/files/", path, protocol, stop_after=15 * MIB)
    assert first["done"] is False
    assert {r["version"] for r in first["requests"]} == {version}
    stored = int(offset_of(first["url"]).headers["Upload-Offset"])
    assert 14 * MIB <= stored < 40 * MIB

    second = js_draft(app.url + "/files/", path, protocol, stop_after=0, upload_url=first["url"])
    assert second["done"] is True
    methods = [r["method"] for r in second["requests"]]
    assert methods[0] == "HEAD" and "POST" not in methods
    assert second["requests"][1]["offset"] == str(stored)  # resumed, not restarted
    name = parse_options_header(requests.get(second["url"], stream=True)
                                .headers["Content-Disposition"])[1]["filename"]
    assert name == "draft.bin"  # from tus-js-client's Upload-Metadata, decoded
    # (A Node stream source learns that it ended only after its last PATCH, which therefore
    # says ?0; reaching the Upload-Length given at creation completes the upload.)
    assert offset_of(second["url"]).headers["Upload-Complete"] == "?1"
    assert download_sha256(second["url"]) == digest
    assert upload_id(second["url"]) == upload_id(first["url"])
