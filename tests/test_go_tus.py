"""Interop with go-tus (github.com/eventials/go-tus, pinned in tests/go/go.mod): a small client
program (tests/go/main.go) is built with `go build` into a temporary folder, uploads part of a
file, exits as if killed, and a second process resumes from the server's offset with the upload
URL go-tus kept in its store. The download's SHA-256 must match the file's."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import requests

from .helpers import MIB, TUS, sha256
from .minio_process import ROOT

GO_DIR = ROOT / "tests" / "go"


@pytest.fixture(scope="module")
def gotus(tmp_path_factory) -> str:
    go = shutil.which("go")
    if go is None:
        pytest.fail("Go is required for the go-tus interop test (it is on the project's machines)")
    binary = tmp_path_factory.mktemp("gotus") / "gotus"
    env = dict(os.environ, GOFLAGS="-mod=readonly", GOTOOLCHAIN="local", CGO_ENABLED="0")
    done = subprocess.run([go, "build", "-o", str(binary), "."], cwd=GO_DIR, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"go build failed:\n{done.stderr}"
    return str(binary)


def run(gotus: str, endpoint: str, path, store, stop_after: int | None = None):
    args = [gotus, endpoint, str(path), str(store)]
    if stop_after is not None:
        args.append(str(stop_after))
    return subprocess.run(args, capture_output=True, text=True, timeout=120)


def test_go_tus_resumes_across_processes(gotus, server, tmp_path):
    data = os.urandom(5 * MIB + 123)
    path = tmp_path / "go-tus.bin"
    path.write_bytes(data)
    store = tmp_path / "store.json"

    first = run(gotus, server.files_url(), path, store, stop_after=3)
    assert first.returncode == 3, first.stderr
    assert "starting at offset 0 of" in first.stderr
    listed = requests.get(server.url + "/files").json()["uploads"]
    assert len(listed) == 1 and not listed[0]["completed"]
    url = listed[0]["url"]
    head = requests.head(url, headers=TUS)
    assert head.status_code == 200
    assert int(head.headers["Upload-Offset"]) == 3 * MIB

    second = run(gotus, server.files_url(), path, store)
    assert second.returncode == 0, second.stderr
    assert f"starting at offset {3 * MIB} of {len(data)}" in second.stderr
    assert second.stdout.strip() == url  # the same upload, not a new one
    assert len(requests.get(server.url + "/files").json()["uploads"]) == 1

    download = requests.get(url)
    assert download.status_code == 200
    assert sha256(download.content) == sha256(data)
    [upload] = requests.get(server.url + "/files").json()["uploads"]
    assert upload["filename"] == "go-tus.bin" and upload["completed"]


def test_go_tus_single_process_upload(gotus, server, tmp_path):
    data = os.urandom(2 * MIB + 1)
    path = tmp_path / "one-go.bin"
    path.write_bytes(data)
    done = run(gotus, server.files_url(), path, tmp_path / "store.json")
    assert done.returncode == 0, done.stderr
    assert sha256(requests.get(done.stdout.strip()).content) == sha256(data)
