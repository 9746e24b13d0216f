"""post-finish and post-terminate are never lost: receiver down, server killed, several workers."""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time

import pytest

from tus_server.events.outbox import Outbox

from .helpers import TUS, create_url, patch, upload_id
from .hook_receiver import Receiver
from .minio_process import ROOT, free_port
from .test_hooks import hook_server, receiver, remove_bucket  # noqa: F401  (fixtures)


def cli(settings, bucket: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MINIO_ENDPOINT=settings.minio_endpoint,
               MINIO_ACCESS_KEY=settings.minio_access_key,
               MINIO_SECRET_KEY=settings.minio_secret_key, TUS_SYSTEM_BUCKET=bucket)
    return subprocess.run([sys.executable, "-m", "tus_server", "hooks", *args], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=60)


def test_receiver_down_at_finish_gets_the_event_when_it_comes_up(hook_server, settings):
    port = free_port()
    server = hook_server(f"http://127.0.0.1:{port}/hooks", hooks_enabled=("post-finish",),
                         hooks_backoff=0.1, hooks_outbox_max_backoff=0.5)
    url = create_url(server.url, 4)
    assert patch(url, 0, b"data").status_code == 204  # the finish does not wait for the hook
    time.sleep(0.5)
    listed = cli(settings, server.settings.system_bucket, "pending")
    assert listed.returncode == 0
    assert upload_id(url) in listed.stdout and "post-finish" in listed.stdout
    assert "unreachable" in listed.stdout
    late = Receiver(port=port)
    try:
        call = late.wait_for("post-finish", timeout=10)[0]
        assert call["body"]["Event"]["Upload"]["ID"] == upload_id(url)
        assert call["headers"]["Idempotency-Key"] in listed.stdout
        deadline = time.monotonic() + 5
        while Outbox(server.settings, server.store.objects).ids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert Outbox(server.settings, server.store.objects).ids() == []
        time.sleep(0.5)
        assert len(late.of("post-finish")) == 1
    finally:
        late.stop()


def test_sigkilled_server_delivers_after_restart(gunicorn_server, store):
    port = free_port()
    bucket = "tusminio-test-" + secrets.token_hex(4)
    env = {"TUS_HOOKS_URL": f"http://127.0.0.1:{port}/hooks", "TUS_SYSTEM_BUCKET": bucket,
           "TUS_HOOKS_ENABLED": "post-finish,post-terminate", "TUS_HOOKS_OUTBOX_POLL": "0.2",
           "TUS_HOOKS_BACKOFF": "0.1", "TUS_HOOKS_OUTBOX_MAX_BACKOFF": "0.5"}
    try:
        first = gunicorn_server(extra_env=env)
        url = create_url(first.url, 5)
        assert patch(url, 0, b"12345").status_code == 204
        first.kill(signal.SIGKILL)  # right after the final PATCH's answer
        late = Receiver(port=port)
        try:
            gunicorn_server(port=first.port, extra_env=env)
            call = late.wait_for("post-finish", timeout=20)[0]
            assert call["body"]["Event"]["Upload"]["ID"] == upload_id(url)
            assert call["body"]["Event"]["HTTPRequest"]["Method"] == "PATCH"
        finally:
            late.stop()
    finally:
        remove_bucket(store, bucket)


def test_retry_and_drop_from_the_command_line(hook_server, settings):
    server = hook_server(f"http://127.0.0.1:{free_port()}/hooks",
                         hooks_enabled=("post-finish", "post-terminate"), hooks_backoff=60)
    bucket = server.settings.system_bucket
    url = create_url(server.url, 2)
    assert patch(url, 0, b"ab").status_code == 204
    import requests

    assert requests.delete(url, headers=TUS).status_code == 204
    outbox = Outbox(server.settings, server.store.objects)
    deadline = time.monotonic() + 5
    while len([e for e in outbox.pending() if e["attempts"]]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    events = outbox.pending()
    assert [e["type"] for e in events] == ["post-finish", "post-terminate"]
    assert all(e["next_attempt"] > time.time() + 30 for e in events)  # backing off
    retried = cli(settings, bucket, "retry", events[0]["id"])
    assert retried.returncode == 0, retried.stderr
    # Due now: the running server tries it again at its next scan (and fails again).
    deadline = time.monotonic() + 5
    while outbox.read(events[0]["id"])[0]["attempts"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox.read(events[0]["id"])[0]["attempts"] == 2
    dropped = cli(settings, bucket, "drop", events[1]["id"])
    assert dropped.returncode == 0
    assert outbox.read(events[1]["id"]) == (None, None)
    assert cli(settings, bucket, "drop", "nope").returncode == 1
    assert cli(settings, bucket, "retry").returncode == 2


def test_two_deliverers_send_each_event_once(hook_server, receiver):
    first = hook_server(receiver.url, hooks_enabled=("post-finish",), hooks_outbox_poll=0.05)
    second = hook_server(receiver.url, hooks_enabled=("post-finish",), hooks_outbox_poll=0.05,
                         system_bucket=first.settings.system_bucket)
    urls = [create_url((first if i % 2 else second).url, 1) for i in range(8)]
    for i, url in enumerate(urls):
        assert patch(url, 0, b"x").status_code == 204
    calls = receiver.wait_for("post-finish", 8)
    time.sleep(1)
    calls = receiver.of("post-finish")
    keys = [c["headers"]["Idempotency-Key"] for c in calls]
    assert len(keys) == len(set(keys)) == 8
    assert sorted(c["body"]["Event"]["Upload"]["ID"] for c in calls) == \
        sorted(upload_id(u) for u in urls)


@pytest.mark.parametrize("status", [500, 404])
def test_a_failing_receiver_is_retried_until_it_accepts(hook_server, receiver, status):
    server = hook_server(receiver.url, hooks_enabled=("post-finish",), hooks_backoff=0.05)
    receiver.statuses["post-finish"] = [status, status, status]
    url = create_url(server.url, 1)
    assert patch(url, 0, b"x").status_code == 204
    calls = receiver.wait_for("post-finish", 4)
    assert len({c["headers"]["Idempotency-Key"] for c in calls}) == 1


def test_a_damaged_outbox_object_does_not_block_the_others(hook_server, receiver, store):
    import io

    server = hook_server(receiver.url, hooks_enabled=("post-finish",))
    bucket = server.settings.system_bucket
    Outbox(server.settings, server.store.objects)._ensure_bucket()
    store.client.put_object(bucket, "outbox/0000000000000-damaged.json", io.BytesIO(b"{not"), 4)
    url = create_url(server.url, 1)
    assert patch(url, 0, b"x").status_code == 204
    assert receiver.wait_for("post-finish")[0]["body"]["Event"]["Upload"]["ID"] == upload_id(url)
    outbox = Outbox(server.settings, server.store.objects)
    deadline = time.monotonic() + 5
    while len(outbox.ids()) > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert outbox.ids() == ["0000000000000-damaged"]
    listed = cli(server.settings, bucket, "pending")
    assert "0000000000000-damaged  (unreadable)" in listed.stdout
    assert cli(server.settings, bucket, "drop", "0000000000000-damaged").returncode == 0
    assert outbox.ids() == []
