"""A PATCH refused before its body is read (413, 423, 409) must reach a Node client as its
status. Node's HTTP client keeps writing the body while the answer arrives; a server that then
closes the socket with the body unread makes the kernel reset the connection, and
tus-js-client reports `write EPIPE` (and would retry a PATCH that can never succeed).

The real tus-js-client (tests/js/tus_js_refused.mjs) resumes an upload; between its HEAD and
its PATCH the test makes the PATCH fail: a live lock held elsewhere (423), the offset moved by
another client (409), or an upload shorter than the file (413). Both servers are checked: the
Werkzeug one the other tests use and gunicorn, which serves production.
"""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from .helpers import MIB, create_url, metadata, patch, upload_id
from .minio_process import ROOT
from .test_tus_js_client import node_binary

from tus_server.storage.lease import write_generation

SCRIPT = ROOT / "tests" / "js" / "tus_js_refused.mjs"
FILE_SIZE = 48 * MIB  # far more than socket buffers hold, so the client is still writing


@pytest.fixture(params=["werkzeug", "gunicorn"])
def served(request, make_server, gunicorn_server):
    overrides = {"handover_wait": 1.0, "lock_lease": 30}
    if request.param == "werkzeug":
        return make_server(**overrides)
    return gunicorn_server(**overrides)


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("refused") / "big.bin"
    with open(path, "wb") as out:
        for _ in range(FILE_SIZE // MIB):
            out.write(os.urandom(MIB))
    return path


def run_refused(upload_url: str, path, before_patch) -> dict:
    """Start the client, let it HEAD, call `before_patch()`, let it PATCH; its outcome."""
    proc = subprocess.Popen([node_binary(), str(SCRIPT), upload_url, str(path)], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        assert first == "PAUSE", (first, proc.stderr.read() if proc.poll() is not None else "")
        before_patch()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def assert_refused_with(result: dict, status: int) -> None:
    assert not result["ok"], result
    assert "EPIPE" not in result["message"] and "ECONNRESET" not in result["message"], result
    assert result["status"] == status, result
    assert f"response code: {status}" in result["message"], result


def test_413_over_the_upload_length_reaches_node(served, big_file):
    upload_url = create_url(served.url, MIB, metadata(filename="short.bin"))
    result = run_refused(upload_url, big_file, lambda: None)
    assert_refused_with(result, 413)


def test_409_wrong_offset_reaches_node(served, big_file):
    upload_url = create_url(served.url, FILE_SIZE, metadata(filename="moved.bin"))

    def move_offset():
        assert patch(upload_url, 0, b"x" * 1000).status_code == 204

    result = run_refused(upload_url, big_file, move_offset)
    assert_refused_with(result, 409)


def test_423_locked_reaches_node(served, store, big_file):
    upload_url = create_url(served.url, FILE_SIZE, metadata(filename="locked.bin"))
    uid = upload_id(upload_url)

    def take_lock():
        # A live holder in another (imaginary) process that never hands over.
        assert write_generation(store.objects, uid, None, "held", "elsewhere", None,
                                time.time() + 60)

    result = run_refused(upload_url, big_file, take_lock)
    assert_refused_with(result, 423)
