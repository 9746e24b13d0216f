"""Erasure-coded MinIO: one node with four drive folders (EC:2) loses a drive mid-upload.

This test starts its own MinIO (not the session one) and its own app pointed at it.
"""
from __future__ import annotations

import hashlib
import shutil
import time
from pathlib import Path

import pytest
import requests

from tus_server.app import create_app
from tus_server.config import Settings
from tus_server.storage.minio_backend import MinioStore

from .helpers import MIB, OCTET, TUS, ThreadedServer, create_url, head, metadata
from .minio_process import ACCESS_KEY, SECRET_KEY, MinioProcess

pytestmark = pytest.mark.slow

SIZE = 50 * MIB
PATCH_SIZE = 7 * MIB + 3  # not a multiple of the 5 MiB chunks


def wait_for_write_quorum(server: MinioProcess, timeout: float = 60) -> None:
    """`/minio/health/ready` answers 200 before the drives are formatted; this one does not."""
    deadline = time.monotonic() + timeout
    url = f"http://{server.endpoint}/minio/health/cluster"
    while time.monotonic() < deadline:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"erasure-coded MinIO never reached write quorum; see {server.log_path}")


@pytest.fixture
def erasure_minio(tmp_path, monkeypatch):
    # MinIO refuses drive folders on the root disk ("drive not found") unless it runs in CI/CD
    # mode; real deployments give each drive its own disk.
    monkeypatch.setenv("MINIO_CI_CD", "1")
    server = MinioProcess(tmp_path / "erasure", drives=4).start()
    wait_for_write_quorum(server)
    yield server
    server.stop()
    shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture
def erasure_app(erasure_minio, layout):
    settings = Settings(minio_endpoint=erasure_minio.endpoint, minio_access_key=ACCESS_KEY,
                        minio_secret_key=SECRET_KEY, cleanup_interval=0, layout=layout,
                        bucket="tus-erasure", retry_after=1)
    served = ThreadedServer(create_app(settings, MinioStore(settings)))
    yield served.url
    served.stop()


def wipe(drive: Path) -> list[str]:
    """Remove everything inside a drive folder (the folder itself stays, empty)."""
    removed = []
    for _ in range(5):  # MinIO may create entries while we delete
        entries = list(drive.iterdir())
        if not entries:
            break
        for entry in entries:
            removed.append(entry.name)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    return removed


def body_that_wipes(data: bytes, drive: Path, at: int, log: list):
    """Yield `data` in 1 MiB pieces and wipe `drive` once `at` bytes have gone out."""
    for start in range(0, len(data), MIB):
        if start >= at and not log:
            log.extend(wipe(drive))
        yield data[start:start + MIB]


def test_upload_survives_losing_a_drive_mid_upload(erasure_minio, erasure_app):
    data = bytearray()
    seed = b"erasure"
    while len(data) < SIZE:
        seed = hashlib.sha256(seed).digest()
        data += seed * 2048
    data = bytes(data[:SIZE])
    url = create_url(erasure_app, SIZE, metadata(filename="erasure.bin"))
    drive = erasure_minio.drive_paths()[1]
    assert drive.name == "drive2" and any(drive.iterdir())

    removed: list[str] = []
    offset = 0
    while offset < SIZE:
        piece = data[offset:offset + PATCH_SIZE]
        body = piece
        if offset <= SIZE // 2 < offset + len(piece):
            # This PATCH loses the drive halfway through its body (sent chunked).
            body = body_that_wipes(piece, drive, SIZE // 2 - offset, removed)
        response = requests.patch(url, data=body, timeout=120,
                                  headers={**TUS, **OCTET, "Upload-Offset": str(offset)})
        assert response.status_code == 204, response.text
        assert int(response.headers["Upload-Offset"]) == offset + len(piece)
        offset += len(piece)

    assert ".minio.sys" in removed, f"drive2 was not wiped: {removed}"
    assert head(url).headers["Upload-Offset"] == str(SIZE)
    hasher = hashlib.sha256()
    with requests.get(url, stream=True, timeout=120) as response:
        assert response.status_code == 200
        for piece in response.iter_content(MIB):
            hasher.update(piece)
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
