"""Hooks against a real HTTP receiver: every event, every answer field, failures losing nothing."""
from __future__ import annotations

import secrets
import time

import pytest
import requests
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from tus_server.config import HOOK_EVENTS, Settings
from tus_server.events.hooks import SIGNALS
from tus_server.storage import instances

from .helpers import TUS, b64, create, create_url, head, metadata, patch, upload_id
from .hook_receiver import Receiver, closed_port_url


@pytest.fixture
def receiver():
    served = Receiver()
    yield served
    served.stop()


def remove_bucket(store, bucket: str) -> None:
    """Remove a test's own system bucket, after the heartbeat this process writes there (a
    beat landing between the emptying and the removal would leave the bucket behind, and
    every later test that looks at all of MinIO would find its objects)."""
    with instances._beats_guard:
        beat = instances._beats.pop((store.settings.minio_endpoint, bucket), None)
    if beat is not None:
        beat.stop()
    client = store.client
    for attempt in range(5):
        if not client.bucket_exists(bucket):
            return
        names = [o.object_name for o in client.list_objects(bucket, recursive=True)]
        if names:
            list(client.remove_objects(bucket, [DeleteObject(n) for n in names]))
        try:
            client.remove_bucket(bucket)
            return
        except S3Error as exc:
            if exc.code != "BucketNotEmpty" or attempt == 4:
                raise
            time.sleep(0.2)


@pytest.fixture
def hook_server(make_server, store):
    """`hook_server(url, **settings)`: the app with hooks to `url`, its own system bucket."""
    started = []

    def start(url: str, **overrides):
        options = dict(hooks_url=url, hooks_enabled=HOOK_EVENTS, hooks_timeout=2.0,
                       hooks_retries=2, hooks_backoff=0.05, hooks_outbox_poll=0.2,
                       system_bucket="tusminio-test-" + secrets.token_hex(4))
        options.update(overrides)
        live = make_server(**options)
        started.append(live)
        return live

    yield start
    for live in started:
        live._served.server.app.extensions["tus_hooks"].stop()
        remove_bucket(store, live.settings.system_bucket)


def upload_ids(server) -> list[str]:
    return server.store.list_ids()


def test_every_event_in_order_with_tusd_fields(hook_server, receiver):
    server = hook_server(receiver.url)
    meta = metadata(filename="a.txt", filetype="text/plain")
    url = create_url(server.url, 10, meta)
    uid = upload_id(url)
    assert patch(url, 0, b"0123456789").status_code == 204
    receiver.wait_for("post-finish")
    assert requests.delete(url, headers=TUS).status_code == 204
    receiver.wait_for("post-terminate")
    receiver.wait_for("post-receive")
    assert [t for t in receiver.types() if t != "post-receive"] == [
        "pre-create", "post-create", "pre-finish", "post-finish", "pre-terminate",
        "post-terminate"]

    pre_create = receiver.of("pre-create")[0]["body"]["Event"]
    assert pre_create["Upload"]["ID"] == ""  # as tusd: no id before creation
    assert pre_create["Upload"]["MetaData"] == {"filename": "a.txt", "filetype": "text/plain"}
    finish = receiver.of("post-finish")[0]
    upload = finish["body"]["Event"]["Upload"]
    assert set(upload) == {"ID", "Size", "SizeIsDeferred", "Offset", "MetaData", "IsPartial",
                           "IsFinal", "PartialUploads", "Storage"}
    assert (upload["ID"], upload["Size"], upload["Offset"]) == (uid, 10, 10)
    assert upload["SizeIsDeferred"] is False and upload["IsPartial"] is False
    assert upload["IsFinal"] is False and upload["PartialUploads"] is None
    bucket = uid if server.settings.layout == "bucket" else server.settings.bucket
    assert upload["Storage"]["Bucket"] == bucket
    assert upload["Storage"]["KeyPattern"].endswith("a.txt.part{X}of1")
    assert upload["Storage"]["ChunkCount"] == "1"
    # The chunk object is where Storage says it is.
    key = upload["Storage"]["KeyPattern"].replace("{X}", "1")
    request = finish["body"]["Event"]["HTTPRequest"]
    assert request["Method"] == "PATCH" and request["URI"] == f"/files/{uid}"
    assert request["RemoteAddr"].startswith("127.0.0.1:")
    assert request["Header"]["Upload-Offset"] == ["0"] and "Host" in request["Header"]
    assert finish["headers"]["Idempotency-Key"]
    assert key  # (the upload is gone now; test_storage_names_the_chunk_objects reads one)
    terminate = receiver.of("post-terminate")[0]["body"]["Event"]
    assert terminate["Upload"]["ID"] == uid and terminate["HTTPRequest"]["Method"] == "DELETE"


def test_storage_names_the_chunk_objects(hook_server, receiver):
    server = hook_server(receiver.url)
    url = create_url(server.url, 5, metadata(filename="b.bin"))
    assert patch(url, 0, b"hello").status_code == 204
    storage = receiver.wait_for("post-finish")[0]["body"]["Event"]["Upload"]["Storage"]
    key = storage["KeyPattern"].replace("{X}", "1")
    data = server.store.client.get_object(storage["Bucket"], key).read()
    assert data == b"hello"


def test_default_enabled_events_are_tusds(hook_server, receiver):
    server = hook_server(receiver.url, hooks_enabled=Settings().hooks_enabled)
    assert Settings().hooks_enabled == ("pre-create", "post-create", "post-receive",
                                        "post-terminate", "post-finish")
    url = create_url(server.url, 3)
    assert patch(url, 0, b"abc").status_code == 204
    receiver.wait_for("post-finish")
    assert requests.delete(url, headers=TUS).status_code == 204
    receiver.wait_for("post-terminate")
    assert "pre-finish" not in receiver.types() and "pre-terminate" not in receiver.types()


def test_forwarded_headers_only_those_named(hook_server, receiver):
    server = hook_server(receiver.url, hooks_forward_headers=("Authorization", "X-Tenant"))
    create_url(server.url, 3, headers={"Authorization": "Bearer abc", "X-Tenant": "t1",
                                       "X-Other": "no"})
    call = receiver.wait_for("pre-create")[0]
    assert call["headers"]["Authorization"] == "Bearer abc"
    assert call["headers"]["X-Tenant"] == "t1"
    assert "X-Other" not in call["headers"]
    assert call["body"]["Event"]["HTTPRequest"]["Header"]["X-Other"] == ["no"]


def test_pre_create_reject_answers_with_the_hooks_response(hook_server, receiver):
    server = hook_server(receiver.url)
    receiver.answers["pre-create"] = {"RejectUpload": True, "HTTPResponse": {
        "StatusCode": 403, "Body": "quota exceeded", "Header": {"X-Reason": "quota"}}}
    before = upload_ids(server)
    response = create(server.url, 10)
    assert response.status_code == 403
    assert response.text.strip() == "quota exceeded"
    assert response.headers["X-Reason"] == "quota"
    assert upload_ids(server) == before
    time.sleep(0.3)
    assert receiver.types() == ["pre-create"]


def test_pre_create_reject_without_response_is_tusds_400(hook_server, receiver):
    server = hook_server(receiver.url)
    receiver.answers["pre-create"] = {"RejectUpload": True}
    response = create(server.url, 10)
    assert response.status_code == 400
    assert "rejected" in response.text


def test_pre_create_http_response_is_merged_into_the_201(hook_server, receiver):
    server = hook_server(receiver.url)
    receiver.answers["pre-create"] = {"HTTPResponse": {"Header": {"X-Upload-Note": "hi"}}}
    response = create(server.url, 10)
    assert response.status_code == 201
    assert response.headers["X-Upload-Note"] == "hi"


def test_change_file_info_sets_id_and_metadata(hook_server, receiver):
    server = hook_server(receiver.url)
    chosen = "tus-" + secrets.token_hex(16)
    receiver.answers["pre-create"] = {"ChangeFileInfo": {"ID": chosen,
                                                         "MetaData": {"filename": "new.txt"}}}
    url = create_url(server.url, 4, metadata(filename="old.txt", secret="x"))
    assert upload_id(url) == chosen
    assert head(url).headers["Upload-Metadata"] == f"filename {b64('new.txt')}"
    created = receiver.wait_for("post-create")[0]["body"]["Event"]["Upload"]
    assert created["ID"] == chosen and created["MetaData"] == {"filename": "new.txt"}


@pytest.mark.parametrize("bad_id", ["../etc", "tus-XYZ", "Tus-" + "a" * 32, "tus-" + "a" * 31])
def test_change_file_info_with_a_bad_id_is_500_and_logged(hook_server, receiver, caplog,
                                                          bad_id):
    server = hook_server(receiver.url)
    receiver.answers["pre-create"] = {"ChangeFileInfo": {"ID": bad_id}}
    before = upload_ids(server)
    with caplog.at_level("ERROR", logger="tus_server.hooks"):
        response = create(server.url, 4)
    assert response.status_code == 500
    assert "invalid upload id" in response.text
    assert upload_ids(server) == before
    assert any("breaks the upload id rule" in r.getMessage() for r in caplog.records)


def test_pre_finish_reject_stores_nothing_of_the_last_body(hook_server, receiver):
    server = hook_server(receiver.url)
    receiver.answers["pre-finish"] = {"RejectUpload": True,
                                      "HTTPResponse": {"StatusCode": 422, "Body": "virus"}}
    url = create_url(server.url, 10)
    assert patch(url, 0, b"01234").status_code == 204
    response = patch(url, 5, b"56789")
    assert response.status_code == 422 and response.text.strip() == "virus"
    assert head(url).headers["Upload-Offset"] == "5"
    time.sleep(0.4)
    assert "post-finish" not in receiver.types()


def test_pre_finish_on_a_chunked_last_body_removes_a_rejected_upload(hook_server, receiver):
    server = hook_server(receiver.url)
    receiver.answers["pre-finish"] = {"RejectUpload": True}
    url = create_url(server.url, 6)

    def body():
        yield b"abc"
        yield b"def"

    response = patch(url, 0, body())  # a generator body goes out chunked
    assert response.status_code == 400
    assert head(url).status_code == 404
    assert receiver.of("pre-finish")[0]["body"]["Event"]["Upload"]["Offset"] == 6
    time.sleep(0.4)
    assert "post-finish" not in receiver.types()


def test_pre_terminate_reject_keeps_the_upload(hook_server, receiver):
    server = hook_server(receiver.url)
    receiver.answers["pre-terminate"] = {"RejectTermination": True,
                                         "HTTPResponse": {"Header": {"X-Kept": "1"}}}
    url = create_url(server.url, 10)
    response = requests.delete(url, headers=TUS)
    assert response.status_code == 400
    assert "termination has been rejected" in response.text
    assert response.headers["X-Kept"] == "1"
    assert head(url).status_code == 200
    time.sleep(0.3)
    assert "post-terminate" not in receiver.types()


def test_stop_upload_on_post_receive_ends_and_terminates_the_upload(hook_server, receiver,
                                                                    caplog):
    server = hook_server(receiver.url)
    receiver.answers["post-receive"] = {"StopUpload": True,
                                        "HTTPResponse": {"Body": "stopped by the app"}}
    url = create_url(server.url, 10 * 1024 * 1024)

    def slow_body():
        for _ in range(100):
            yield b"x" * 65536
            time.sleep(0.05)

    with caplog.at_level("INFO", logger="tus_server.events"):
        response = patch(url, 0, slow_body())
    assert response.status_code == 400
    assert response.text.strip() == "stopped by the app"
    assert head(url).status_code == 404
    # The server stopped reading long before the end (the client sends it all regardless).
    written = [r.tus_fields for r in caplog.records if getattr(r, "tus_event", "") ==
               "chunk written"]
    assert len(written) == 1 and 0 < written[0]["received"] < 50 * 65536


def test_post_receive_once_at_the_end_of_each_short_patch(hook_server, receiver):
    # As tusd: a PATCH shorter than the interval reports once, when its body ends.
    server = hook_server(receiver.url, hooks_progress_interval=1.0)
    url = create_url(server.url, 200)
    for offset in range(0, 200, 10):
        assert patch(url, offset, b"z" * 10).status_code == 204
    receiver.wait_for("post-finish")
    calls = receiver.wait_for("post-receive", count=20)
    offsets = sorted(c["body"]["Event"]["Upload"]["Offset"] for c in calls)
    assert offsets == list(range(10, 201, 10))


def test_post_hooks_do_not_slow_the_request(hook_server, receiver):
    server = hook_server(receiver.url)
    receiver.delays["post-create"] = 3
    started = time.monotonic()
    assert create(server.url, 10).status_code == 201
    assert time.monotonic() - started < 2.5
    receiver.wait_for("post-create")


def test_timeout_on_a_blocking_hook_is_502_and_creates_nothing(hook_server, receiver):
    server = hook_server(receiver.url, hooks_timeout=1.0)
    receiver.delays["pre-create"] = 4
    before = upload_ids(server)
    started = time.monotonic()
    response = create(server.url, 10)
    assert response.status_code == 502
    assert "pre-create hook could not be run" in response.text
    assert time.monotonic() - started < 2.5  # a read timeout is not retried (that is >= 3 s)
    assert len(receiver.of("pre-create")) == 1
    assert upload_ids(server) == before


def test_5xx_answers_are_retried_with_backoff(hook_server, receiver):
    server = hook_server(receiver.url, hooks_retries=2, hooks_backoff=0.2)
    receiver.statuses["pre-create"] = [500, 503]
    started = time.monotonic()
    assert create(server.url, 10).status_code == 201
    calls = receiver.of("pre-create")
    assert len(calls) == 3
    assert calls[1]["time"] - calls[0]["time"] >= 0.19  # backoff, then doubled
    assert calls[2]["time"] - calls[1]["time"] >= 0.39
    assert time.monotonic() - started < 2


def test_too_many_failures_is_502(hook_server, receiver):
    server = hook_server(receiver.url, hooks_retries=1)
    receiver.statuses["pre-create"] = [500, 500, 500]
    before = upload_ids(server)
    assert create(server.url, 10).status_code == 502
    assert len(receiver.of("pre-create")) == 2
    assert upload_ids(server) == before


def test_unreachable_endpoint_creates_and_finishes_nothing(hook_server):
    server = hook_server(closed_port_url(), hooks_retries=2, hooks_backoff=0.05)
    before = upload_ids(server)
    response = create(server.url, 10)
    assert response.status_code == 502
    assert upload_ids(server) == before
    # With pre-create off, the finish is what the endpoint guards.
    server2 = hook_server(closed_port_url(), hooks_enabled=("pre-finish",))
    url = create_url(server2.url, 4)
    assert patch(url, 0, b"abcd").status_code == 502
    assert head(url).headers["Upload-Offset"] == "0"


@pytest.mark.parametrize("answer,message", [
    (b"<html>oops</html>", "not JSON"),
    (b"[1, 2]", "must be dict"),
    ({"RejectUpload": "yes"}, "RejectUpload must be bool"),
    ({"HTTPResponse": {"StatusCode": "403"}}, "StatusCode must be int"),
    ({"HTTPResponse": {"StatusCode": 99}}, "not 200-599"),
    ({"HTTPResponse": {"Header": {"X-A": 1}}}, "must be a string"),
    ({"HTTPResponse": {"Header": {"Bad\nName": "v"}}}, "not a valid header"),
    ({"ChangeFileInfo": {"MetaData": ["a"]}}, "must be dict"),
    (b"{" + b" " * 70000 + b"}", "larger than"),
])
def test_malformed_answers_are_a_clear_error_and_create_nothing(hook_server, receiver, caplog,
                                                                answer, message):
    server = hook_server(receiver.url)
    receiver.answers["pre-create"] = answer
    before = upload_ids(server)
    with caplog.at_level("INFO", logger="tus_server.events"):
        response = create(server.url, 10)
    assert response.status_code == 502
    assert upload_ids(server) == before
    assert any("hook failed" in r.getMessage() and message in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_signals_fire_without_an_endpoint(make_server):
    server = make_server()
    seen = []

    def on_finish(sender, event):
        seen.append(event)

    SIGNALS["post-finish"].connect(on_finish)
    try:
        url = create_url(server.url, 3)
        assert patch(url, 0, b"abc").status_code == 204
    finally:
        SIGNALS["post-finish"].disconnect(on_finish)
    assert [e["Event"]["Upload"]["ID"] for e in seen] == [upload_id(url)]
    assert seen[0]["Type"] == "post-finish"


def test_empty_and_final_uploads_send_finish_events(hook_server, receiver):
    server = hook_server(receiver.url)
    assert create(server.url, 0).status_code == 201
    first = receiver.wait_for("post-finish")[0]["body"]["Event"]["Upload"]
    assert first["Size"] == 0 and first["Offset"] == 0
    partial = create_url(server.url, 2, headers={"Upload-Concat": "partial"})
    assert patch(partial, 0, b"ab").status_code == 204
    final = create(server.url, headers={"Upload-Concat": f"final;{partial}"})
    assert final.status_code == 201
    calls = receiver.wait_for("post-finish", 3)
    last = calls[-1]["body"]["Event"]["Upload"]
    assert last["IsFinal"] is True and last["PartialUploads"] == [upload_id(partial)]
    assert calls[1]["body"]["Event"]["Upload"]["IsPartial"] is True


def test_connection_errors_are_retried_until_the_endpoint_is_up(hook_server):
    from .minio_process import free_port
    import threading

    port = free_port()
    server = hook_server(f"http://127.0.0.1:{port}/hooks", hooks_retries=6, hooks_backoff=0.1)
    late: list[Receiver] = []
    timer = threading.Timer(0.5, lambda: late.append(Receiver(port=port)))
    timer.start()
    try:
        response = create(server.url, 10)  # refused for 0.5 s: 0.1 + 0.2 + 0.4 s of backoff
        assert response.status_code == 201
        assert late[0].of("pre-create")[0]["body"]["Event"]["Upload"]["ID"] == ""
    finally:
        timer.join()
        for receiver_ in late:
            receiver_.stop()


@pytest.mark.parametrize("env,message", [
    ({"TUS_HOOKS_URL": "ftp://example.com/x"}, "TUS_HOOKS_URL"),
    ({"TUS_HOOKS_ENABLED": "post-create,post-foo"}, "unknown hook event 'post-foo'"),
    ({"TUS_SYSTEM_BUCKET": "tus-system"}, "not starting with 'tus-'"),
    ({"TUS_SYSTEM_BUCKET": "Bad_Name"}, "TUS_SYSTEM_BUCKET"),
    ({"TUS_LOG_FORMAT": "xml"}, "TUS_LOG_FORMAT"),
    ({"TUS_METRICS": "maybe"}, "TUS_METRICS"),
])
def test_hook_settings_are_checked_at_start(env, message):
    from tus_server.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_pre_finish_and_pre_terminate_responses_merge_into_successes(hook_server, receiver):
    server = hook_server(receiver.url)
    receiver.answers["pre-finish"] = {"HTTPResponse": {"Header": {"X-Scan": "clean"}}}
    receiver.answers["pre-terminate"] = {"HTTPResponse": {"Header": {"X-Bye": "1"}}}
    url = create_url(server.url, 3)
    finished = patch(url, 0, b"abc")
    assert finished.status_code == 204 and finished.headers["X-Scan"] == "clean"
    assert finished.headers["Upload-Offset"] == "3"
    removed = requests.delete(url, headers=TUS)
    assert removed.status_code == 204 and removed.headers["X-Bye"] == "1"
    assert "X-Scan" not in removed.headers
