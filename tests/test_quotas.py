"""Per-owner quotas under attack (issue 17, items 1, 4, 5): bytes received count whatever the
length state, in tus and the IETF draft, under parallel requests; finals and empty uploads take
places; a partial a final reads stays; quota checks and listings read the owner's usage record and
index, not every stored upload's info.

Real JWTs, real HTTP, real MinIO; bytes are counted in the chunk objects MinIO holds.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from .helpers import MIB, OCTET, TUS, data_objects
from .minio_process import ROOT
from .test_auth import SECRET, bearer, create_as, finish
from .test_faults import _slow_body, _stored_offset, _wait_until
from .test_hooks import hook_server, receiver  # noqa: F401  (fixtures)
from .test_ietf import DRAFT, PARTIAL

KIB = 1024
QUOTA = 1 * MIB
CHUNK = 256 * KIB


@pytest.fixture
def quota_server(make_server):
    return make_server(auth="jwt", jwt_secret=SECRET, max_bytes_per_owner=QUOTA,
                       chunk_size=CHUNK)


def stored_bytes(server) -> int:
    """Bytes in chunk and piece objects of every stored upload, as MinIO lists them."""
    return sum(sum(data_objects(server.store, upload_id).values())
               for upload_id in server.store.list_ids())


def chunked(size: int, piece: int = 64 * KIB):
    for start in range(0, size, piece):
        yield b"x" * min(piece, size - start)


def parallel(calls) -> list:
    """Run the calls at once; each result is a status code, or the exception raised."""
    def run(call):
        try:
            return call().status_code
        except requests.RequestException as exc:  # the server stopped reading a refused body
            return exc

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def refused(result) -> bool:
    return result == 413 or isinstance(result, requests.ConnectionError)


# ------------------------------------------------------------------ item 1: bytes received
def test_parallel_ietf_one_shot_bodies_cannot_pass_the_byte_quota(quota_server):
    base = quota_server.url + "/files/"
    alice = bearer("alice")
    sized = [lambda: requests.post(base, data=b"x" * 8 * MIB, headers={
        **DRAFT, "Upload-Complete": "?1", **alice})] * 4
    assert parallel(sized) == [413] * 4  # the length is known: refused before a byte is read
    streamed = [lambda: requests.post(base, data=chunked(8 * MIB), headers={
        **DRAFT, "Upload-Complete": "?1", **alice})] * 4
    results = parallel(streamed)
    assert all(refused(r) for r in results), results
    assert stored_bytes(quota_server) <= QUOTA
    assert not any(info.completed for info in quota_server.store.list())
    more = requests.post(base, data=b"y", headers={**DRAFT, "Upload-Complete": "?1", **alice})
    assert more.status_code == 413, more.text
    assert "TUS_MAX_BYTES_PER_OWNER" in more.text


def test_the_byte_quota_holds_across_worker_processes(gunicorn_server, store):
    server = gunicorn_server(workers=2, chunk_size=CHUNK, extra_env={
        "TUS_AUTH": "jwt", "TUS_JWT_SECRET": SECRET, "TUS_MAX_BYTES_PER_OWNER": str(QUOTA)})
    streamed = [lambda: requests.post(server.url + "/files/", data=chunked(4 * MIB), headers={
        **DRAFT, "Upload-Complete": "?1", **bearer("alice")})] * 4
    results = parallel(streamed)
    assert all(refused(r) for r in results), results
    held = sum(sum(data_objects(store, upload_id).values()) for upload_id in store.list_ids())
    assert held <= QUOTA


def test_a_server_killed_mid_body_leaves_at_most_an_over_count(gunicorn_server, store):
    env = {"TUS_AUTH": "jwt", "TUS_JWT_SECRET": SECRET, "TUS_MAX_BYTES_PER_OWNER": str(4 * MIB)}
    app = gunicorn_server(chunk_size=CHUNK, lock_lease=2, extra_env=env)
    data = os.urandom(3 * MIB)
    url = requests.post(app.url + "/files/", headers={
        **TUS, "Upload-Defer-Length": "1", **bearer("alice")}).headers["Location"]
    uid = url.rsplit("/", 1)[1]
    sender = threading.Thread(target=lambda: _ignore_errors(lambda: requests.patch(
        url, data=_slow_body(data, 64 * KIB, 0.01),
        headers={**TUS, **OCTET, "Upload-Offset": "0", **bearer("alice")})))
    sender.start()
    assert _wait_until(lambda: _stored_offset(store, url) >= MIB, timeout=60)
    app.kill()
    sender.join(timeout=30)
    # Every byte in MinIO (past the offset too) was reserved before it was stored.
    record = json.loads(store.client.get_object("tusminio-system", _usage_key("alice")).read())
    assert record["open"][uid]["bytes"] >= sum(data_objects(store, uid).values())

    app = gunicorn_server(port=app.port, chunk_size=CHUNK, lock_lease=2, extra_env=env)
    offset = _stored_offset(store, url)
    deadline = time.monotonic() + 15
    while True:  # the dead process's lease runs out after lock_lease seconds
        response = requests.patch(url, data=data[offset:], headers={
            **TUS, **OCTET, "Upload-Offset": str(offset), "Upload-Length": str(len(data)),
            **bearer("alice")})
        if response.status_code != 423 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 204, response.text
    record = json.loads(store.client.get_object("tusminio-system", _usage_key("alice")).read())
    assert record["settled"] == {"bytes": len(data), "uploads": 1} and not record["open"]
    over = requests.post(app.url + "/files/", headers={
        **TUS, "Upload-Length": str(MIB + 1), **bearer("alice")})
    assert over.status_code == 413


def _ignore_errors(call) -> None:
    try:
        call()
    except requests.RequestException:  # the server was killed under it
        pass


def _usage_key(owner: str) -> str:
    from tus_server.storage.usage import Usage

    return Usage.key(owner)


def test_tus_deferred_patches_count_against_the_byte_quota(quota_server):
    urls = [requests.post(quota_server.files_url(), headers={
        **TUS, "Upload-Defer-Length": "1", **bearer("alice")}).headers["Location"]
        for _ in range(5)]
    big = [lambda url=url: requests.patch(url, data=b"x" * 4 * MIB, headers={
        **TUS, **OCTET, "Upload-Offset": "0", **bearer("alice")}) for url in urls]
    assert parallel(big) == [413] * 5
    assert stored_bytes(quota_server) == 0
    # 300 KiB each at once: exactly three fit in 1 MiB, whatever the order.
    small = [lambda url=url: requests.patch(url, data=b"x" * 300 * KIB, headers={
        **TUS, **OCTET, "Upload-Offset": "0", **bearer("alice")}) for url in urls]
    assert sorted(parallel(small)) == [204, 204, 204, 413, 413]
    assert stored_bytes(quota_server) == 900 * KIB
    # A chunked body is let in a chunk at a time, as far as the quota reaches.
    rest = next(u for u in urls if requests.head(u, headers={**TUS, **bearer("alice")})
                .headers["Upload-Offset"] == "0")
    result = parallel([lambda: requests.patch(rest, data=chunked(2 * MIB), headers={
        **TUS, **OCTET, "Upload-Offset": "0", **bearer("alice")})])[0]
    assert refused(result), result
    assert stored_bytes(quota_server) <= QUOTA
    other = requests.post(quota_server.files_url(), headers={
        **TUS, "Upload-Length": str(QUOTA), **bearer("bob")})
    assert other.status_code == 201  # bob has his own allowance


def test_ietf_completion_of_an_unknown_length_counts_what_was_received(quota_server):
    base = quota_server.url + "/files/"
    url = requests.post(base, data=b"x" * 700 * KIB, headers={
        **DRAFT, "Upload-Complete": "?0", **bearer("alice")}).headers["Location"]
    done = requests.patch(url, headers={**DRAFT, **PARTIAL, "Upload-Offset": str(700 * KIB),
                                        "Upload-Complete": "?1", **bearer("alice")})
    assert done.status_code == 204 and done.headers["Upload-Complete"] == "?1"
    over = requests.post(quota_server.files_url(), headers={
        **TUS, "Upload-Length": str(400 * KIB), **bearer("alice")})
    assert over.status_code == 413 and "716800 bytes" in over.text


# ------------------------------------------------------------------ item 4: finals, empty ones
@pytest.fixture
def places_server(make_server):
    return make_server(auth="jwt", jwt_secret=SECRET, max_uploads_per_owner=3)


def final_of(server, partial: str, sub: str = "alice") -> requests.Response:
    return requests.post(server.files_url(), headers={
        **TUS, **bearer(sub), "Upload-Concat": f"final;{partial}"})


def finished_partial(server, sub: str = "alice") -> str:
    url = create_as(server, sub, length=1, extra={"Upload-Concat": "partial"})
    finish(url, b"p", sub)
    return url


def test_finals_take_places_under_the_upload_quota(places_server):
    partial = finished_partial(places_server)
    answers = [final_of(places_server, partial).status_code for _ in range(5)]
    assert answers == [201, 201, 201, 429, 429]
    assert "TUS_MAX_UPLOADS_PER_OWNER=3" in final_of(places_server, partial).text


def test_parallel_creations_take_exactly_the_places_there_are(places_server):
    calls = [lambda: requests.post(places_server.files_url(), headers={
        **TUS, "Upload-Length": "5", **bearer("alice")})] * 8
    assert sorted(parallel(calls)) == [201] * 3 + [429] * 5


@pytest.mark.parametrize("protocol", ["tus", "ietf"])
def test_empty_uploads_take_places_under_the_upload_quota(places_server, protocol):
    def empty():
        if protocol == "tus":
            return requests.post(places_server.files_url(), headers={
                **TUS, "Upload-Length": "0", **bearer("alice")})
        return requests.post(places_server.files_url(), headers={
            **DRAFT, "Upload-Complete": "?1", **bearer("alice")})

    assert [empty().status_code for _ in range(4)] == [201, 201, 201, 429]


@pytest.mark.parametrize("headers", [TUS, DRAFT], ids=["tus", "ietf"])
def test_a_partial_that_a_final_reads_cannot_be_deleted(places_server, headers):
    partial = finished_partial(places_server)
    final = final_of(places_server, partial).headers["Location"]
    refused_delete = requests.delete(partial, headers={**headers, **bearer("alice")})
    assert refused_delete.status_code == 409
    assert "final upload" in refused_delete.text
    assert requests.get(final, headers=bearer("alice")).content == b"p"
    assert requests.delete(final, headers={**TUS, **bearer("alice")}).status_code == 204
    assert requests.delete(partial, headers={**headers, **bearer("alice")}).status_code == 204


def test_a_final_whose_partial_is_gone_expires(places_server):
    partial = finished_partial(places_server)
    finals = [final_of(places_server, partial).headers["Location"] for _ in range(3)]
    assert final_of(places_server, partial).status_code == 429
    places_server.store.terminate(partial.rsplit("/", 1)[1])  # retired behind the API's back
    gone = requests.head(finals[0], headers={**TUS, **bearer("alice")})
    assert gone.status_code == 410
    assert requests.head(finals[0], headers={**TUS, **bearer("alice")}).status_code == 404
    usage = places_server._served.server.app.extensions["tus_usage"]
    swept = usage.finals.expire_orphans(places_server.store)
    assert sorted(swept) == sorted(url.rsplit("/", 1)[1] for url in finals[1:])
    for url in finals:
        assert requests.get(url, headers=bearer("alice")).status_code == 404
    assert final_of(places_server, finished_partial(places_server)).status_code == 201


# ------------------------------------------------------------------ item 5: the usage record
def minio_gets(server, call) -> int:
    counts = server.store.objects.http.counts
    before = counts["GET"]
    response = call()
    assert response.status_code in (200, 201), response.text
    return counts["GET"] - before


def test_listing_and_creation_cost_nothing_per_other_owners_upload(make_server):
    server = make_server(auth="jwt", jwt_secret=SECRET, max_bytes_per_owner=100 * MIB,
                         max_uploads_per_owner=100)
    create_as(server, "alice-costs")

    def costs() -> tuple[int, int]:
        listing = minio_gets(server, lambda: requests.get(server.files_url(),
                                                          headers=bearer("alice-costs")))
        creation = minio_gets(server, lambda: requests.post(server.files_url(), headers={
            **TUS, "Upload-Length": "5", **bearer("alice-costs")}))
        return listing, creation

    costs()  # warm: the record and the index exist, alice has two uploads
    alone = costs()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: create_as(server, "bob-costs"), range(40)))
    listing, creation = costs()
    # The record, the index and the infos of alice's own uploads; nothing of bob's 40 (a read
    # per upload of his would add 40 or more). A few requests of slack: alice has one upload
    # more now, and a record write that meets a 412 or a state seen between two LISTs is read
    # again.
    assert listing <= alone[0] + 6, (listing, alone)
    assert creation <= alone[1] + 4, (creation, alone)
    assert listing < 24, listing
    page = requests.get(server.files_url(), headers=bearer("alice-costs")).json()
    assert page["total"] == 4 and len(page["uploads"]) == 4
    assert len(requests.get(server.files_url() + "?per_page=500",
                            headers=bearer("bob-costs")).json()["uploads"]) == 40


def test_a_stale_reservation_never_blocks_for_long_and_cleanup_recounts(quota_server,
                                                                        make_server):
    usage = quota_server._served.server.app.extensions["tus_usage"]
    # A creation that crashed after reserving all of alice's bytes, long ago.
    usage.set_entry("alice", "tus-" + "0" * 32,
                    {"bytes": QUOTA, "counted": True, "since": time.time() - 3600})
    ok = requests.post(quota_server.files_url(), headers={
        **TUS, "Upload-Length": str(QUOTA // 2), **bearer("alice")})
    assert ok.status_code == 201, ok.text
    # The record is lost (or was never written): `cleanup` counts it again from the infos.
    quota_server.store.client.remove_object(quota_server.settings.system_bucket,
                                            _usage_key("alice"))
    env = {"PATH": "/usr/bin:/bin", "MINIO_ENDPOINT": quota_server.settings.minio_endpoint,
           "MINIO_ACCESS_KEY": quota_server.settings.minio_access_key,
           "MINIO_SECRET_KEY": quota_server.settings.minio_secret_key,
           "TUS_LAYOUT": quota_server.settings.layout, "TUS_BUCKET": quota_server.settings.bucket}
    result = subprocess.run([sys.executable, "-m", "tus_server", "cleanup"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    record = json.loads(quota_server.store.client.get_object(
        quota_server.settings.system_bucket, _usage_key("alice")).read())
    assert [e["bytes"] for e in record["open"].values()] == [QUOTA // 2]
    assert record["settled"] == {"bytes": 0, "uploads": 0}
    over = requests.post(quota_server.files_url(), headers={
        **TUS, "Upload-Length": str(QUOTA // 2 + 1), **bearer("alice")})
    assert over.status_code == 413
    # A system bucket never counted (an upgrade): the first server to use it counts once.
    for key in (_usage_key("alice"), "usage/.built"):
        quota_server.store.client.remove_object(quota_server.settings.system_bucket, key)
    fresh = make_server(auth="jwt", jwt_secret=SECRET, max_bytes_per_owner=QUOTA,
                        chunk_size=CHUNK)
    assert requests.post(fresh.files_url(), headers={
        **TUS, "Upload-Length": str(QUOTA // 2 + 1), **bearer("alice")}).status_code == 413
    listed = requests.get(fresh.files_url(), headers=bearer("alice")).json()
    assert listed["total"] == 1


def test_finished_files_count_until_deleted(quota_server):
    url = create_as(quota_server, "alice", length=600 * KIB)
    finish(url, b"x" * 600 * KIB, "alice")  # finished: summed in the record from now on
    assert requests.post(quota_server.files_url(), headers={
        **TUS, "Upload-Length": str(500 * KIB), **bearer("alice")}).status_code == 413
    assert requests.delete(url, headers={**TUS, **bearer("alice")}).status_code == 204
    assert requests.post(quota_server.files_url(), headers={
        **TUS, "Upload-Length": str(QUOTA), **bearer("alice")}).status_code == 201


def test_a_refused_creation_calls_no_hook_and_a_chosen_id_keeps_its_place(hook_server, receiver):
    import secrets

    server = hook_server(receiver.url, auth="jwt", jwt_secret=SECRET, max_uploads_per_owner=1)
    chosen = "tus-" + secrets.token_hex(16)
    receiver.answers["pre-create"] = {"ChangeFileInfo": {"ID": chosen}}
    created = requests.post(server.files_url(), headers={
        **TUS, "Upload-Length": "5", **bearer("alice")})
    assert created.headers["Location"].endswith(chosen)
    refused_creation = requests.post(server.files_url(), headers={
        **TUS, "Upload-Length": "5", **bearer("alice")})
    assert refused_creation.status_code == 429
    assert len(receiver.of("pre-create")) == 1
    listed = requests.get(server.files_url(), headers=bearer("alice")).json()
    assert [u["id"] for u in listed["uploads"]] == [chosen] and listed["total"] == 1
    assert requests.delete(created.headers["Location"],
                           headers={**TUS, **bearer("alice")}).status_code == 204
    receiver.answers["pre-create"] = {}
    assert requests.post(server.files_url(), headers={
        **TUS, "Upload-Length": "5", **bearer("alice")}).status_code == 201
