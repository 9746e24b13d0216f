"""Interop with the real tus-js-client (npm devDependency) running in Node.

tests/js/tus_js_upload.mjs uploads a file and prints the upload URL and every request it sent;
these tests check what the server ended up with.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from .helpers import MIB, chunk_objects, create_url, head, metadata, patch, upload_id
from .minio_process import ROOT

SCRIPT = ROOT / "tests" / "js" / "tus_js_upload.mjs"


def node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is required for the tus-js-client tests (apt-get install nodejs)")
    if not (ROOT / "node_modules" / "tus-js-client").is_dir():
        pytest.fail("tus-js-client is not installed: run `make setup` (npm ci)")
    return node


def write_file(path: Path, size: int) -> str:
    """Random file written in pieces; returns its SHA-256."""
    hasher = hashlib.sha256()
    with open(path, "wb") as out:
        left = size
        while left:
            piece = os.urandom(min(left, 4 * MIB))
            hasher.update(piece)
            out.write(piece)
            left -= len(piece)
    return hasher.hexdigest()


def js_upload(endpoint: str, path: Path, parallel: int = 1, chunk_size: int = 0,
              upload_url: str | None = None) -> dict:
    args = [node_binary(), str(SCRIPT), endpoint, str(path), str(parallel), str(chunk_size)]
    if upload_url:
        args.append(upload_url)
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"tus-js-client failed:\n{done.stderr}\n{done.stdout}"
    return json.loads(done.stdout.strip().splitlines()[-1])


def download_sha256(url: str) -> str:
    hasher = hashlib.sha256()
    with requests.get(url, stream=True) as response:
        assert response.status_code == 200, response.text
        for piece in response.iter_content(MIB):
            hasher.update(piece)
    return hasher.hexdigest()


def test_parallel_uploads_4_of_40_mib(server, tmp_path):
    path = tmp_path / "forty.bin"
    digest = write_file(path, 40 * MIB)

    result = js_upload(server.files_url(), path, parallel=4, chunk_size=5 * MIB)

    assert download_sha256(result["url"]) == digest
    listing = requests.get(server.files_url(), params={"per_page": 500}).json()["uploads"]
    partials = [u for u in listing if u["concat"] == "partial"]
    finals = [u for u in listing if u["concat"] == "final"]
    assert len(partials) == 4 and all(u["completed"] for u in partials)
    assert len(finals) == 1 and finals[0]["id"] == upload_id(result["url"])
    assert sum(u["size"] for u in partials) == 40 * MIB
    final = head(result["url"])
    assert final.headers["Upload-Offset"] == str(40 * MIB)
    assert final.headers["Upload-Concat"].startswith("final;")
    assert {upload_id(u) for u in final.headers["Upload-Concat"][len("final;"):].split()} == \
        {u["id"] for u in partials}
    posts = [r for r in result["requests"] if r["method"] == "POST"]
    assert sorted(r["concat"].split(";")[0] for r in posts) == ["final"] + ["partial"] * 4


def test_single_upload_with_chunk_size(server, tmp_path):
    # The client's 4 MiB PATCHes do not line up with the server's 5 MiB chunk objects.
    size = 12 * MIB + 17
    path = tmp_path / "twelve.bin"
    digest = write_file(path, size)

    result = js_upload(server.files_url(), path, chunk_size=4 * MIB)

    patches = [int(r["offset"]) for r in result["requests"] if r["method"] == "PATCH"]
    assert patches == [0, 4 * MIB, 8 * MIB, 12 * MIB]
    assert download_sha256(result["url"]) == digest
    assert chunk_objects(server.store, upload_id(result["url"])) == {
        "twelve.bin.part1of3": 5 * MIB, "twelve.bin.part2of3": 5 * MIB,
        "twelve.bin.part3of3": 2 * MIB + 17}


def test_resume_from_the_server_offset(server, tmp_path):
    size = 11 * MIB + 5
    path = tmp_path / "resume.bin"
    digest = write_file(path, size)
    started = 6 * MIB + 123  # mid-chunk, as an interrupted client would leave it
    url = create_url(server.url, size, metadata(filename="resume.bin"))
    with open(path, "rb") as source:
        assert patch(url, 0, source.read(started)).status_code == 204

    result = js_upload(server.files_url(), path, chunk_size=2 * MIB, upload_url=url)

    methods = [r["method"] for r in result["requests"]]
    assert "POST" not in methods
    assert methods[0] == "HEAD"
    offsets = [int(r["offset"]) for r in result["requests"] if r["method"] == "PATCH"]
    assert offsets[0] == started
    assert offsets == list(range(started, size, 2 * MIB))
    assert result["url"] == url
    assert head(url).headers["Upload-Offset"] == str(size)
    assert download_sha256(url) == digest
