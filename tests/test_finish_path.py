"""One finish path (issue 17, item 3): every way an upload reaches its length asks pre-finish
(which can veto: the upload is then not finished, not downloadable) and then sends post-finish,
in tus 1.0 and in the IETF draft alike, against a real hook endpoint.

The receiver vetoes every upload whose filename starts with `scan-`, as the audit's server did.
"""
from __future__ import annotations

import time

import pytest
import requests

from .helpers import OCTET, TUS, metadata
from .test_hooks import hook_server, receiver  # noqa: F401  (fixtures)
from .test_ietf import DRAFT, PARTIAL

DATA = b"12345"


def scan_veto(call):
    name = call["body"]["Event"]["Upload"]["MetaData"].get("filename", "")
    if name.startswith("scan-"):
        return {"RejectUpload": True, "HTTPResponse": {"StatusCode": 422, "Body": "scan failed"}}
    return {}


def chunked(data: bytes):
    """A generator body: requests sends it chunked (no Content-Length)."""
    yield data[:2]
    yield data[2:]


def _location(response) -> str:
    assert response.status_code == 201, response.text
    return response.headers["Location"]


# Each way to finish: (base URL, filename) -> (the last response, the data the file holds).
def tus_patch(base, name):
    url = _location(requests.post(base + "/files/", headers={
        **TUS, "Upload-Length": "5", "Upload-Metadata": metadata(filename=name)}))
    return requests.patch(url, data=DATA, headers={**TUS, **OCTET, "Upload-Offset": "0"}), DATA


def tus_chunked_patch(base, name):
    url = _location(requests.post(base + "/files/", headers={
        **TUS, "Upload-Length": "5", "Upload-Metadata": metadata(filename=name)}))
    return requests.patch(url, data=chunked(DATA),
                          headers={**TUS, **OCTET, "Upload-Offset": "0"}), DATA


def tus_declared_length(base, name):
    url = _location(requests.post(base + "/files/", headers={
        **TUS, "Upload-Defer-Length": "1", "Upload-Metadata": metadata(filename=name)}))
    first = requests.patch(url, data=DATA, headers={**TUS, **OCTET, "Upload-Offset": "0"})
    assert first.status_code == 204, first.text
    return requests.patch(url, headers={**TUS, **OCTET, "Upload-Offset": "5",
                                        "Upload-Length": "5"}), DATA


def tus_creation_with_upload(base, name):
    return requests.post(base + "/files/", data=DATA, headers={
        **TUS, **OCTET, "Upload-Length": "5", "Upload-Metadata": metadata(filename=name)}), DATA


def tus_empty(base, name):
    return requests.post(base + "/files/", headers={
        **TUS, "Upload-Length": "0", "Upload-Metadata": metadata(filename=name)}), b""


def tus_final(base, name):
    partial = _location(requests.post(base + "/files/", data=DATA, headers={
        **TUS, **OCTET, "Upload-Length": "5", "Upload-Concat": "partial",
        "Upload-Metadata": metadata(filename="part.bin")}))
    return requests.post(base + "/files/", headers={
        **TUS, "Upload-Concat": f"final;{partial}",
        "Upload-Metadata": metadata(filename=name)}), DATA


def ietf_empty_complete(base, name):
    url = _location(requests.post(base + "/files/", data=DATA, headers={
        **DRAFT, "Upload-Complete": "?0", "Upload-Metadata": metadata(filename=name)}))
    return requests.patch(url, headers={**DRAFT, **PARTIAL, "Upload-Offset": "5",
                                        "Upload-Complete": "?1"}), DATA


def ietf_append(base, name):
    url = _location(requests.post(base + "/files/", headers={
        **DRAFT, "Upload-Complete": "?0", "Upload-Length": "5",
        "Upload-Metadata": metadata(filename=name)}))
    return requests.patch(url, data=DATA, headers={**DRAFT, **PARTIAL, "Upload-Offset": "0",
                                                   "Upload-Complete": "?1"}), DATA


def ietf_one_shot(base, name):
    return requests.post(base + "/files/", data=DATA, headers={
        **DRAFT, "Upload-Complete": "?1", "Upload-Metadata": metadata(filename=name)}), DATA


def ietf_one_shot_chunked(base, name):
    return requests.post(base + "/files/", data=chunked(DATA), headers={
        **DRAFT, "Upload-Complete": "?1", "Upload-Metadata": metadata(filename=name)}), DATA


def ietf_empty(base, name):
    return requests.post(base + "/files/", headers={
        **DRAFT, "Upload-Complete": "?1", "Upload-Metadata": metadata(filename=name)}), b""


WAYS = [tus_patch, tus_chunked_patch, tus_declared_length, tus_creation_with_upload, tus_empty,
        tus_final, ietf_empty_complete, ietf_append, ietf_one_shot, ietf_one_shot_chunked,
        ietf_empty]


def _events(receiver, hook_type: str, name: str) -> list[dict]:
    return [c["body"]["Event"]["Upload"] for c in receiver.of(hook_type)
            if c["body"]["Event"]["Upload"]["MetaData"].get("filename") == name]


@pytest.mark.parametrize("way", WAYS, ids=[w.__name__ for w in WAYS])
def test_every_way_to_finish_asks_pre_finish_then_sends_post_finish(hook_server, receiver, way):
    server = hook_server(receiver.url)
    receiver.answers["pre-finish"] = scan_veto
    name = f"ok-{way.__name__}.bin"
    response, data = way(server.url, name)
    assert response.status_code in (201, 204), response.text
    deadline = time.monotonic() + 10
    while not _events(receiver, "post-finish", name) and time.monotonic() < deadline:
        time.sleep(0.02)
    finished = _events(receiver, "post-finish", name)
    asked = _events(receiver, "pre-finish", name)
    assert len(asked) == 1 and len(finished) == 1, receiver.types()
    assert asked[0]["ID"] == finished[0]["ID"]
    assert finished[0]["Offset"] == finished[0]["Size"] == len(data)
    download = requests.get(f"{server.url}/files/{finished[0]['ID']}")
    assert download.status_code == 200 and download.content == data


@pytest.mark.parametrize("way", WAYS, ids=[w.__name__ for w in WAYS])
def test_a_pre_finish_veto_holds_on_every_way_to_finish(hook_server, receiver, way):
    server = hook_server(receiver.url)
    receiver.answers["pre-finish"] = scan_veto
    name = f"scan-{way.__name__}.bin"
    response, _ = way(server.url, name)
    assert response.status_code == 422, (response.status_code, response.text)
    assert response.text.strip() == "scan failed"
    assert len(_events(receiver, "pre-finish", name)) >= 1
    time.sleep(0.4)  # post-finish would come from the outbox by now
    assert _events(receiver, "post-finish", name) == []
    vetoed = [info for info in server.store.list() if info.filename == name]
    assert not any(info.completed for info in vetoed), vetoed
    for info in vetoed:
        assert requests.get(f"{server.url}/files/{info.id}").status_code != 200
