"""Several app processes on one MinIO: no upload state in process memory, and a per-upload lock
(`.tus/lock/`, write-once generations in MinIO) that keeps two PATCHes through two processes apart.

Every test here runs the app under gunicorn in subprocesses, as `make run` serves it.
"""
from __future__ import annotations

import base64
import hashlib
import json
import signal
import threading
import time
from email.utils import parsedate_to_datetime

import pytest
import requests
from minio.error import S3Error
from tusclient import client as tus_client

from tus_server.config import ConfigError, Settings
from tus_server.storage.instances import PREFIX as INSTANCES_PREFIX
from tus_server.storage.instances import Instances, request_time
from tus_server.storage.lease import current as current_lock
from tus_server.storage.lease import answer_late_requests, write_generation
from tus_server.storage.store import UploadNotFound

from .helpers import (
    MIB,
    TUS,
    OCTET,
    create_url,
    head,
    metadata,
    patch,
    sha256,
    stored_file,
    upload_id,
)

CHUNK = 1 * MIB


def pattern(size: int, label: bytes) -> bytes:
    """Bytes that say whose they are: any mix of two clients' bodies is visible."""
    block = hashlib.sha256(label).digest() * 32  # 1 KiB
    return (block * (size // len(block) + 1))[:size]


def repr_digest(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def wait_for_repr_digest(url: str, timeout: float = 30) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        digest = requests.get(url, stream=True).headers.get("Repr-Digest")
        if digest:
            return digest
        time.sleep(0.25)
    return None


@pytest.fixture
def two_instances(gunicorn_server):
    return gunicorn_server(chunk_size=CHUNK), gunicorn_server(chunk_size=CHUNK)


def test_upload_created_on_a_patched_on_b_is_seen_on_a(two_instances):
    a, b = two_instances
    data = pattern(5 * MIB + 321, b"a-and-b")
    url_a = create_url(a.url, len(data), metadata(filename="shared.bin"))
    url_b = b.url + "/files/" + upload_id(url_a)

    assert patch(url_b, 0, data[:MIB + 7]).status_code == 204
    assert head(url_a).headers["Upload-Offset"] == str(MIB + 7)
    assert patch(url_a, MIB + 7, data[MIB + 7:3 * MIB]).status_code == 204
    assert head(url_b).headers["Upload-Offset"] == str(3 * MIB)
    # A stale offset is a conflict on either instance.
    assert patch(url_b, MIB + 7, data[MIB + 7:2 * MIB]).status_code == 409
    assert patch(url_b, 3 * MIB, data[3 * MIB:]).status_code == 204
    assert head(url_a).headers["Upload-Offset"] == str(len(data))

    got = requests.get(url_a)
    assert got.status_code == 200
    assert sha256(got.content) == sha256(data)
    # Neither process saw every byte in order, so the digest comes from a pass over the chunks.
    assert wait_for_repr_digest(url_b) == repr_digest(data)

    assert requests.delete(url_b, headers=TUS).status_code == 204
    assert head(url_a).status_code == 404


def test_a_handover_request_that_outlives_a_delete_leaves_the_upload_missing(gunicorn_server,
                                                                             store, settings):
    """CI saw it: instance a's digest pass asked b's DELETE to hand over, and its `release`
    generation landed after the deletion had listed the lock; a HEAD then answered 423 for
    20 s (a live instance's holder that never answers) instead of 404. In the bucket layout
    nothing can land; in the prefix layout a request that waits on such a generation answers
    404 once its wait is over, and the deletion answers one that it sees with `released`."""
    a = gunicorn_server(chunk_size=CHUNK, handover_wait=1.0)
    b = gunicorn_server(chunk_size=CHUNK, handover_wait=1.0)
    url_a = create_url(a.url, 10, metadata(filename="gone.bin"))
    uid = upload_id(url_a)
    url_b = b.url + "/files/" + uid
    assert patch(url_a, 0, b"0123456789").status_code == 204
    assert requests.delete(url_b, headers=TUS).status_code == 204
    # The late request, as the race leaves it: it names a holder of a live instance (this
    # test's own heartbeat).
    live = Instances(store.objects, settings).own_id()
    if settings.layout == "bucket":
        with pytest.raises(UploadNotFound):
            write_generation(store.objects, uid, None, "release", "gone-holder", live,
                             skip=False)
    else:
        assert current_lock(store.objects, uid) is None  # the deletion left no lock object
        assert write_generation(store.objects, uid, None, "release", "gone-holder", live,
                                skip=False) is not None
        assert head(url_a).status_code == 404
        assert patch(url_b, 10, b"x").status_code == 404
        answer_late_requests(store.objects, uid)
        assert current_lock(store.objects, uid).state == "released"
    for url in (url_a, url_b):
        assert head(url).status_code == 404
        assert patch(url, 10, b"x").status_code == 404
        assert requests.get(url).status_code == 404


def race(url_a: str, url_b: str, offset: int, body_a: bytes, body_b: bytes) -> dict:
    """PATCH both bodies at `offset` at the same moment, one through each instance."""
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def send(name: str, url: str, body: bytes) -> None:
        barrier.wait()
        try:
            results[name] = patch(url, offset, body).status_code
        except requests.RequestException as exc:  # reported by the assertion below
            results[name] = exc

    threads = [threading.Thread(target=send, args=("a", url_a, body_a)),
               threading.Thread(target=send, args=("b", url_b, body_b))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def test_two_clients_patching_one_upload_through_two_instances(two_instances, store):
    a, b = two_instances
    racing = 4 * MIB
    size = racing + 2 * MIB + 11
    seen = []
    for round_ in range(4):
        body_a, body_b = pattern(size, b"client-a"), pattern(size, b"client-b")
        url_a = create_url(a.url, size, metadata(filename=f"race{round_}.bin"))
        uid = upload_id(url_a)
        url_b = b.url + "/files/" + uid

        results = race(url_a, url_b, 0, body_a[:racing], body_b[:racing])

        seen.append(results)
        # Either the first finished before the second got the lock (204, then 409), or the
        # second made it hand over (400 with what it had stored, then 409): never a 500, and
        # never both bodies' bytes in one file.
        assert sorted(map(str, results.values())) in (["204", "409"], ["400", "409"]), results
        offset = int(head(url_a).headers["Upload-Offset"])
        assert 0 < offset <= racing
        stored = stored_file(store, uid)[:offset]
        assert stored in (body_a[:offset], body_b[:offset]), "stored bytes mix both clients"
        winner_body = body_a if stored == body_a[:offset] else body_b

        # The loser learns the offset and finishes with the winner's remaining bytes.
        done = patch(url_b, offset, winner_body[offset:])
        assert done.status_code == 204, done.text
        got = requests.get(url_a)
        assert sha256(got.content) == sha256(winner_body)
        assert wait_for_repr_digest(url_b) == repr_digest(winner_body)
    print("race outcomes:", seen)


class SlowBody:
    """A chunked request body that trickles until told to stop (or its sender dies)."""

    def __init__(self, piece: bytes = b"s" * 16384, pause: float = 0.05):
        self.piece = piece
        self.pause = pause
        self.stop = threading.Event()
        self.sent = 0

    def __iter__(self):
        while not self.stop.is_set():
            self.sent += len(self.piece)
            yield self.piece
            time.sleep(self.pause)


def start_slow_patch(url: str, offset: int, body: SlowBody) -> tuple[threading.Thread, dict]:
    outcome: dict[str, object] = {}

    def run():
        try:
            outcome["status"] = requests.patch(
                url, data=iter(body), timeout=60,
                headers={**TUS, **OCTET, "Upload-Offset": str(offset)}).status_code
        except requests.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def wait_for_lock(store, uid: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lock = current_lock(store.objects, uid)
        if lock is not None and lock.state == "held":
            return lock._asdict()
        time.sleep(0.02)
    raise AssertionError("the PATCH never took the upload's lock")


def test_patch_on_another_instance_hands_over_the_upload(two_instances, store):
    a, b = two_instances
    url_a = create_url(a.url, 10 * MIB, metadata(filename="held.bin"))
    uid = upload_id(url_a)
    url_b = b.url + "/files/" + uid
    body = SlowBody()
    thread, outcome = start_slow_patch(url_a, 0, body)
    try:
        wait_for_lock(store, uid)
        time.sleep(0.5)
        began = time.monotonic()
        response = patch(url_b, 0, b"x" * 1000)
        handed_over_in = time.monotonic() - began
        # Instance a stored what it had received and let go; b then found the offset moved.
        assert response.status_code == 409, response.text
        assert response.headers["Tus-Resumable"] == "1.0.0"
        assert handed_over_in < 4, f"the hand-over took {handed_over_in:.1f} s"
    finally:
        body.stop.set()
        thread.join(timeout=30)
    assert outcome.get("status") == 400, outcome
    stored = int(head(url_b).headers["Upload-Offset"])
    assert 0 < stored <= body.sent
    assert stored_file(store, uid)[:stored] == (body.piece * (stored // len(body.piece) + 1))[:stored]
    assert current_lock(store.objects, uid).state == "released", "the lock was not released"


def heartbeats(store) -> dict[str, dict]:
    """The newest heartbeat object of each instance in the system bucket, by instance id."""
    client, bucket = store.client, store.settings.system_bucket
    found = {}
    for obj in client.list_objects(bucket, prefix=INSTANCES_PREFIX, recursive=True):
        instance = obj.object_name[len(INSTANCES_PREFIX):].split("/")[0]
        if instance in found:
            continue  # the newest lists first
        beat = newest_beat(client, bucket, obj.object_name, instance)
        if beat is not None:
            found[instance] = beat
    return found


def newest_beat(client, bucket: str, name: str, instance: str):
    """The content of an instance's newest beat. A live instance deletes the beats it
    superseded a second or so later, so the one listed may be gone by the time it is read:
    then the instance's newest is listed again (None when the instance left no beat)."""
    for _ in range(5):
        try:
            response = client.get_object(bucket, name)
        except S3Error as exc:
            if exc.code != "NoSuchKey":
                raise
            newer = next(iter(client.list_objects(
                bucket, prefix=f"{INSTANCES_PREFIX}{instance}/", recursive=True)), None)
            if newer is None:
                return None
            name = newer.object_name
            continue
        try:
            return json.loads(response.read())
        finally:
            response.close()
            response.release_conn()
    raise AssertionError(f"the beats of instance {instance} kept vanishing")


def test_lock_of_a_killed_instance_is_taken_over_once_its_heartbeat_stops(gunicorn_server,
                                                                           store):
    # The lease is long on purpose: only the heartbeat can free the lock this soon.
    a = gunicorn_server(chunk_size=CHUNK, lock_lease=60)
    b = gunicorn_server(chunk_size=CHUNK, lock_lease=60)
    data = pattern(2 * MIB, b"after-the-crash")
    url_a = create_url(a.url, len(data), metadata(filename="crash.bin"))
    uid = upload_id(url_a)
    url_b = b.url + "/files/" + uid

    body = SlowBody()
    thread, _ = start_slow_patch(url_a, 0, body)
    lock = wait_for_lock(store, uid)
    assert lock["instance"] in heartbeats(store), "the lock names no live instance"
    a.kill()  # SIGKILL: the lock and the heartbeat object stay behind
    killed_at = time.time()
    body.stop.set()
    thread.join(timeout=30)
    stale = current_lock(store.objects, uid)
    assert stale is not None and stale.state != "released", "the killed holder's lock is gone"
    # Valid while its instance beats: no lease to wait out, and no renewal write.
    assert stale.expires == 0
    assert lock["instance"] in heartbeats(store)

    # The dead holder cannot hand over: the PATCH waits (up to TUS_HANDOVER_WAIT) until the
    # heartbeat is TUS_HEARTBEAT_TIMEOUT old, then takes the upload over.
    offset = int(store.get(uid).offset)
    statuses = []
    while True:
        response = patch(url_b, offset, data[offset:])
        statuses.append(response.status_code)
        if response.status_code != 423:
            break
        assert time.time() < killed_at + 15, "still locked 15 s after the kill"
    accepted_at = time.time()
    print("taken over after", round(accepted_at - killed_at, 2), "s", statuses)

    assert statuses[-1] == 204, statuses
    # Bound on correctness, not speed: tus-js-client's default retries give up after ~9 s.
    assert accepted_at - killed_at < 5 + 1, f"taken over {accepted_at - killed_at:.1f} s late"
    assert head(url_b).headers["Upload-Offset"] == str(len(data))
    assert sha256(requests.get(url_b).content) == sha256(data)


def test_a_heartbeat_age_is_read_to_the_millisecond_and_never_above_the_truth(store, settings):
    """MinIO's request id dates its answer to the nanosecond (`Date` has whole seconds), so a
    live instance's beat is read as at most about an interval old, and a beat's age grows
    with the time the test itself measures."""
    instances = Instances(store.objects, settings)
    own = instances.own_id()
    assert own is not None
    ages = []
    for _ in range(12):
        ages.append(instances.age(own))
        time.sleep(0.15)
    assert all(age is not None and -0.05 <= age < settings.heartbeat_interval + 0.5
               for age in ages), ages
    assert any(age != int(age) for age in ages), ages  # not whole seconds
    beat = store.objects.list_quickly(settings.system_bucket, f"{INSTANCES_PREFIX}{own}/", 1)[0]
    url = store.client.get_presigned_url("HEAD", settings.system_bucket, beat)
    answer = store.objects.quick_http.request("HEAD", url, retries=False)
    date = parsedate_to_datetime(answer.headers["Date"])
    assert request_time(answer.headers["x-amz-request-id"], date) is not None
    assert request_time("not-hex", date) is None
    assert request_time(f"{int((date.timestamp() + 5) * 1e9):X}", date) is None


def test_each_worker_keeps_one_heartbeat_and_deletes_it_when_stopped(gunicorn_server, store):
    before = set(heartbeats(store))
    app = gunicorn_server(chunk_size=CHUNK, workers=2)
    # Uploads through both workers (tuspy opens a connection per request): still one
    # heartbeat object per process, not one per upload.
    for n in range(6):
        url = create_url(app.url, 10, metadata(filename=f"beat{n}.bin"))
        assert patch(url, 0, b"0123456789").status_code == 204
    ours = {k: v for k, v in heartbeats(store).items() if k not in before}
    assert 1 <= len(ours) <= 2, ours
    assert {beat["pid"] for beat in ours.values()} <= set(app.worker_pids())
    app.kill(signal.SIGTERM)
    assert not set(heartbeats(store)) & set(ours), "a stopped worker left its heartbeat"


def test_gunicorn_with_two_workers_completes_a_tuspy_upload(gunicorn_server, tmp_path):
    app = gunicorn_server(chunk_size=CHUNK, workers=2)
    data = pattern(9 * MIB + 5, b"two-workers")
    path = tmp_path / "workers.bin"
    path.write_bytes(data)
    # tuspy opens a new connection per request, so the PATCHes spread over both workers.
    uploader = tus_client.TusClient(app.url + "/files/").uploader(
        str(path), chunk_size=MIB + 3, metadata={"filename": "workers.bin"})
    uploader.upload()
    assert head(uploader.url).headers["Upload-Offset"] == str(len(data))
    got = requests.get(uploader.url)
    assert got.status_code == 200
    assert sha256(got.content) == sha256(data)
    assert wait_for_repr_digest(uploader.url) == repr_digest(data)


def test_heartbeat_timeout_must_leave_room_above_the_interval():
    # Room for a late beat: the age read never exceeds the true age (storage/instances.py).
    with pytest.raises(ConfigError):
        Settings.from_env({"TUS_HEARTBEAT_INTERVAL": "1", "TUS_HEARTBEAT_TIMEOUT": "1.4"})
    assert Settings.from_env({"TUS_HEARTBEAT_INTERVAL": "1",
                              "TUS_HEARTBEAT_TIMEOUT": "1.5"}).heartbeat_timeout == 1.5
    assert Settings.from_env({}).heartbeat_timeout == 2.0
    assert Settings.from_env({"TUS_HEARTBEAT_INTERVAL": "0"}).heartbeat_interval == 0
