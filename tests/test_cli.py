"""`python -m tus_server.cli upload|download`, run as a subprocess against live servers."""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import threading
import time

import pytest
import requests
from werkzeug.http import parse_options_header

from .cli_helpers import (KIB, MIB, assert_ok, assert_one_line_failure, cli_args, cli_env, kill,
                          part_state, remember_upload, run_cli, server_offset, start_cli,
                          stored_urls, upload, wait_until, write_part_state)
from .helpers import TUS, create_url, metadata, patch, random_bytes, sha256, upload_id
from .minio_process import free_port

# ------------------------------------------------------------------------------- upload
def test_upload_prints_the_url_and_the_server_has_the_bytes(make_server, tmp_path):
    live = make_server(chunk_size=64 * KIB)
    data = random_bytes(300 * KIB + 5)
    path = tmp_path / "résumé 2026.pdf"
    path.write_bytes(data)
    url_store = tmp_path / "urls.json"

    url = assert_ok(run_cli(tmp_path, "upload", path, "--endpoint", live.files_url(),
                            "--chunk-size", "64K", "--url-store", url_store))

    assert url.startswith(live.url + "/files/tus-")
    response = requests.get(url)
    assert sha256(response.content) == sha256(data)
    assert response.headers["Content-Type"] == "application/pdf"
    assert parse_options_header(response.headers["Content-Disposition"])[1]["filename"] == \
        "résumé 2026.pdf"
    assert stored_urls(url_store) == []  # only unfinished uploads are remembered


def test_upload_of_an_empty_file(server, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    url = assert_ok(run_cli(tmp_path, "upload", path, "--endpoint", server.files_url(),
                            "--url-store", tmp_path / "urls.json"))
    response = requests.get(url)
    assert response.status_code == 200 and response.content == b""


def test_upload_uses_the_endpoint_and_url_store_from_the_environment(server, tmp_path):
    path = tmp_path / "env.bin"
    path.write_bytes(b"from the environment")
    env = cli_env(tmp_path) | {"TUS_ENDPOINT": server.files_url()}
    result = subprocess.run(cli_args("upload", path), cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    url = assert_ok(result)
    assert requests.get(url).content == b"from the environment"
    assert (tmp_path / "home" / ".cache" / "tus-minio" / "urls.json").exists()


def test_interrupted_upload_is_resumed_by_a_second_run(make_server, tmp_path, monkeypatch):
    live = make_server(chunk_size=256 * KIB)
    writes = []  # (offset, bytes received) of every PATCH the server handled
    real_write = live.store.write

    def slow_write(upload_id_, offset, *args, **kwargs):
        result = real_write(upload_id_, offset, *args, **kwargs)
        writes.append((offset, result.received))
        time.sleep(0.05)  # slow enough to stop the client half way
        return result

    monkeypatch.setattr(live.store, "write", slow_write)
    data = random_bytes(20 * MIB)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    url_store = tmp_path / "urls.json"
    args = ("upload", path, "--endpoint", live.files_url(), "--chunk-size", "256K",
            "--url-store", url_store)

    proc = start_cli(tmp_path, *args)
    url = wait_until(lambda: (stored_urls(url_store) or [None])[0])
    wait_until(lambda: server_offset(url) >= 1 * MIB)
    kill(proc)
    # The PATCH the client was sending when it died may still be finishing on the server.
    offsets = [server_offset(url)]
    while True:
        time.sleep(0.3)
        offsets.append(server_offset(url))
        if offsets[-1] == offsets[-2]:
            break
    interrupted_at = offsets[-1]
    assert 0 < interrupted_at < len(data)
    assert stored_urls(url_store) == [url]
    writes.clear()

    result = run_cli(tmp_path, *args)

    assert assert_ok(result) == url  # the same upload, not a new one
    assert f"resuming {url} at byte {interrupted_at} of {len(data)}" in result.stderr
    assert writes[0][0] == interrupted_at
    assert sum(received for _, received in writes) == len(data) - interrupted_at
    assert live.store.list_ids() == [upload_id(url)]
    assert sha256(requests.get(url).content) == sha256(data)
    assert stored_urls(url_store) == []


def test_upload_starts_over_when_the_remembered_upload_is_gone(server, tmp_path):
    data = random_bytes(100 * KIB)
    path = tmp_path / "again.bin"
    path.write_bytes(data)
    url_store = tmp_path / "urls.json"
    gone = create_url(server.url, len(data), metadata(filename="again.bin"))
    assert requests.delete(gone, headers=TUS).status_code == 204
    remember_upload(url_store, server.files_url(), path, gone)

    result = run_cli(tmp_path, "upload", path, "--endpoint", server.files_url(),
                     "--url-store", url_store)

    url = assert_ok(result)
    assert url != gone
    assert "the remembered upload is gone" in result.stderr
    assert requests.get(url).content == data


def test_upload_of_a_file_edited_since_is_a_new_upload(server, tmp_path):
    before = random_bytes(100 * KIB)
    path = tmp_path / "edited.bin"
    path.write_bytes(before)
    url_store = tmp_path / "urls.json"
    old = create_url(server.url, len(before), metadata(filename="edited.bin"))
    assert patch(old, 0, before[:90 * KIB]).status_code == 204
    remember_upload(url_store, server.files_url(), path, old)
    # Same size and same first 64 KiB (all tuspy's own fingerprint looks at), other bytes.
    after = before[:80 * KIB] + bytes(b ^ 1 for b in before[80 * KIB:])
    path.write_bytes(after)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    result = run_cli(tmp_path, "upload", path, "--endpoint", server.files_url(),
                     "--url-store", url_store)

    url = assert_ok(result)
    assert url != old and "resuming" not in result.stderr
    assert requests.get(url).content == after


def test_upload_of_a_missing_file_fails_in_one_line(tmp_path):
    result = run_cli(tmp_path, "upload", tmp_path / "nope.bin", "--url-store", tmp_path / "u.json")
    assert_one_line_failure(result, "nope.bin")


def test_upload_to_a_server_that_is_down_fails_in_one_line(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"data")
    result = run_cli(tmp_path, "upload", path, "--endpoint", f"http://127.0.0.1:{free_port()}/files/",
                     "--url-store", tmp_path / "u.json", "--retries", "0")
    assert_one_line_failure(result, "could not create the upload", "refused")


def test_upload_refused_by_the_server_shows_its_reason(make_server, tmp_path):
    live = make_server(max_size=10)
    path = tmp_path / "f.bin"
    path.write_bytes(b"more than ten bytes")
    result = run_cli(tmp_path, "upload", path, "--endpoint", live.files_url(),
                     "--url-store", tmp_path / "u.json")
    assert_one_line_failure(result, "413", "Tus-Max-Size")


# ------------------------------------------------------------------------------- download
@pytest.mark.parametrize("name,saved_as", [
    ("résumé 2026.pdf", "résumé 2026.pdf"),
    ("данные.bin", "данные.bin"),
    ("../../etc/passwd", "passwd"),
    ("evil\r\nname.txt", "evilname.txt"),
])
def test_download_saves_under_the_servers_filename(server, tmp_path, name, saved_as):
    data = random_bytes(10 * KIB)
    url = upload(server.url, data, name)
    target = tmp_path / "downloads"
    target.mkdir()

    result = run_cli(tmp_path, "download", url, cwd=target)

    assert assert_ok(result) == saved_as
    assert [p.name for p in target.iterdir()] == [saved_as]
    assert (target / saved_as).read_bytes() == data
    assert f"sha256 {sha256(data)}" in result.stderr


def test_download_to_a_path_or_a_directory(make_server, tmp_path):
    live = make_server(chunk_size=64 * KIB)
    data = random_bytes(3 * 64 * KIB + 17)
    url = upload(live.url, data, "named.bin")

    out = tmp_path / "chosen.name"
    assert assert_ok(run_cli(tmp_path, "download", url, "-o", out)) == str(out)
    assert out.read_bytes() == data
    folder = tmp_path / "folder"
    folder.mkdir()
    assert assert_ok(run_cli(tmp_path, "download", url, "-o", folder)) == str(folder / "named.bin")
    assert (folder / "named.bin").read_bytes() == data
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith((".part", ".json"))) == []


def test_download_of_an_empty_file(server, tmp_path):
    url = upload(server.url, b"", "empty.txt")
    assert assert_ok(run_cli(tmp_path, "download", url, "-o", tmp_path / "e")) == str(tmp_path / "e")
    assert (tmp_path / "e").read_bytes() == b""


def test_interrupted_download_is_resumed_by_a_second_run(make_server, tmp_path, monkeypatch):
    live = make_server(chunk_size=256 * KIB)
    data = random_bytes(8 * MIB + 123)
    url = upload(live.url, data, "resume-me.bin")
    opened = []  # first byte of every read the server made for a GET
    pause = {"seconds": 0.05}
    real_open = live.store.open

    def slow_open(upload_id_, start, end, info=None):
        opened.append(start)
        for piece in real_open(upload_id_, start, end, info):
            time.sleep(pause["seconds"])
            yield piece

    monkeypatch.setattr(live.store, "open", slow_open)
    out = tmp_path / "resume-me.bin"
    part = tmp_path / "resume-me.bin.part"

    proc = start_cli(tmp_path, "download", url, "-o", out)
    wait_until(lambda: part.exists() and part.stat().st_size >= 2 * MIB)
    kill(proc)
    have = part.stat().st_size
    assert 0 < have < len(data)
    assert part_state(out) == {
        "url": url, "etag": requests.get(url, headers={"If-None-Match": "*"}).headers["ETag"]}
    pause["seconds"] = 0
    opened.clear()

    result = run_cli(tmp_path, "download", url, "-o", out)

    assert_ok(result)
    assert f"resuming at byte {have} of {len(data)}" in result.stderr
    assert opened == [have]  # one ranged read from where the first run stopped
    assert sha256(out.read_bytes()) == sha256(data)
    assert not part.exists() and not (tmp_path / "resume-me.bin.part.json").exists()


def test_download_starts_over_when_the_file_changed_on_the_server(server, tmp_path):
    data = random_bytes(70 * KIB)
    url = upload(server.url, data, "changed.bin")
    out = tmp_path / "changed.bin"
    (tmp_path / "changed.bin.part").write_bytes(random_bytes(20 * KIB))
    write_part_state(out, url, '"an-etag-the-file-no-longer-has"')

    result = run_cli(tmp_path, "download", url, "-o", out)

    assert_ok(result)
    assert "changed on the server" in result.stderr  # If-Range failed: the server sent 200
    assert "resuming" not in result.stderr
    assert out.read_bytes() == data


def test_download_refuses_a_part_of_another_upload_unless_forced(server, tmp_path):
    old = random_bytes(50 * KIB)
    new = random_bytes(70 * KIB)
    old_url = upload(server.url, old, "old.bin")
    new_url = upload(server.url, new, "new.bin")
    out = tmp_path / "file.bin"
    part = tmp_path / "file.bin.part"
    part.write_bytes(old[:20 * KIB])
    write_part_state(out, old_url, requests.get(old_url).headers["ETag"])

    refused = run_cli(tmp_path, "download", new_url, "-o", out)

    assert refused.returncode == 1
    assert_one_line_failure(refused, "partial download of " + old_url, "--force")
    assert part.read_bytes() == old[:20 * KIB] and not out.exists()
    # The other upload's partial is still resumable by its own command.
    assert part_state(out)["url"] == old_url

    forced = run_cli(tmp_path, "download", new_url, "-o", out, "--force")
    assert_ok(forced)
    assert "discarding it" in forced.stderr and "resuming" not in forced.stderr
    assert sha256(out.read_bytes()) == sha256(new)
    assert not part.exists() and not (tmp_path / "file.bin.part.json").exists()


def test_download_refuses_a_part_it_did_not_write_unless_forced(server, tmp_path):
    data = random_bytes(30 * KIB)
    url = upload(server.url, data, "x.bin")
    part = tmp_path / "x.bin.part"
    part.write_bytes(b"?" * 1000)

    refused = run_cli(tmp_path, "download", url, "-o", tmp_path / "x.bin")
    assert_one_line_failure(refused, "x.bin.part exists", "--force")
    assert refused.returncode == 1 and part.read_bytes() == b"?" * 1000

    assert_ok(run_cli(tmp_path, "download", url, "-o", tmp_path / "x.bin", "--force"))
    assert (tmp_path / "x.bin").read_bytes() == data


def test_download_of_a_complete_part_only_verifies_it(server, tmp_path):
    data = random_bytes(30 * KIB)
    url = upload(server.url, data, "done.bin")
    (tmp_path / "done.bin.part").write_bytes(data)
    write_part_state(tmp_path / "done.bin", url, requests.get(url).headers["ETag"])
    result = run_cli(tmp_path, "download", url, "-o", tmp_path / "done.bin")
    assert_ok(result)
    assert (tmp_path / "done.bin").read_bytes() == data


def test_download_with_a_damaged_part_fails_the_digest_check(server, tmp_path):
    data = random_bytes(60 * KIB)
    url = upload(server.url, data, "d.bin")
    damaged = bytearray(data[:20 * KIB])
    damaged[100] ^= 0xFF
    part = tmp_path / "d.bin.part"
    part.write_bytes(bytes(damaged))
    write_part_state(tmp_path / "d.bin", url, requests.get(url).headers["ETag"])

    result = run_cli(tmp_path, "download", url, "-o", tmp_path / "d.bin")

    assert "resuming at byte 20480" in result.stderr
    assert_one_line_failure(result, "SHA-256 mismatch", sha256(data))
    assert not (tmp_path / "d.bin").exists()
    assert not part.exists()  # so the next run starts afresh and succeeds
    assert_ok(run_cli(tmp_path, "download", url, "-o", tmp_path / "d.bin"))
    assert (tmp_path / "d.bin").read_bytes() == data


def test_no_verify_still_checks_a_digest_the_server_sent(server, tmp_path):
    data = random_bytes(40 * KIB)
    url = upload(server.url, data, "n.bin")
    (tmp_path / "n.bin.part").write_bytes(b"\0" * 1000)
    write_part_state(tmp_path / "n.bin", url, requests.get(url).headers["ETag"])
    result = run_cli(tmp_path, "download", url, "-o", tmp_path / "n.bin", "--no-verify")
    assert_one_line_failure(result, "SHA-256 mismatch")


def test_download_waits_for_a_digest_still_being_computed(make_server, tmp_path, monkeypatch):
    live = make_server(chunk_size=64 * KIB)
    real_schedule = live.store.schedule_digest

    def late_schedule(upload_id_):
        threading.Timer(1.5, real_schedule, args=(upload_id_,)).start()

    monkeypatch.setattr(live.store, "schedule_digest", late_schedule)
    data = random_bytes(200 * KIB)
    url = create_url(live.url, len(data), metadata(filename="late.bin"))
    assert patch(url, 0, data[:70 * KIB]).status_code == 204
    live.store._hashes.drop(upload_id(url))  # as after a restart: no running hash
    assert patch(url, 70 * KIB, data[70 * KIB:]).status_code == 204
    assert "Repr-Digest" not in requests.get(url, headers={"If-None-Match": "*"}).headers

    result = run_cli(tmp_path, "download", url, "-o", tmp_path / "late.bin")

    assert_ok(result)
    assert f"sha256 {sha256(data)}" in result.stderr
    assert (tmp_path / "late.bin").read_bytes() == data


def test_download_without_any_digest_fails_unless_told_not_to_verify(make_server, tmp_path,
                                                                      monkeypatch):
    live = make_server(chunk_size=64 * KIB)
    monkeypatch.setattr(live.store, "schedule_digest", lambda upload_id_: None)
    data = random_bytes(100 * KIB)
    url = create_url(live.url, len(data), metadata(filename="nodigest.bin"))
    assert patch(url, 0, data[:1000]).status_code == 204
    live.store._hashes.drop(upload_id(url))
    assert patch(url, 1000, data[1000:]).status_code == 204
    out = tmp_path / "nodigest.bin"

    failed = run_cli(tmp_path, "download", url, "-o", out, "--digest-wait", "1")
    assert_one_line_failure(failed, "no Repr-Digest", "--no-verify")
    assert not out.exists()

    result = run_cli(tmp_path, "download", url, "-o", out, "--no-verify")
    assert_ok(result)
    assert "not verified" in result.stderr
    assert out.read_bytes() == data


def test_download_cut_off_by_a_corrupt_chunk_fails(make_server, store, tmp_path):
    live = make_server(chunk_size=64 * KIB)
    data = random_bytes(4 * 64 * KIB)
    url = upload(live.url, data, "c.bin")
    bucket, prefix = store._location(upload_id(url))
    # The altered bytes carry the original's SHA-256, as chunks of earlier versions did.
    original = hashlib.sha256(data[2 * 64 * KIB:3 * 64 * KIB]).hexdigest()
    store.client.put_object(bucket, prefix + "c.bin.part3of4", io.BytesIO(b"\0" * 64 * KIB),
                            64 * KIB, metadata={"sha256": original})

    result = run_cli(tmp_path, "download", url, "-o", tmp_path / "c.bin", "--retries", "0")

    assert_one_line_failure(result, "broke off", "run the same command again")
    assert not (tmp_path / "c.bin").exists()
    kept = (tmp_path / "c.bin.part").read_bytes()
    assert kept == data[:len(kept)] and len(kept) <= 2 * 64 * KIB
    # Resuming asks for the rest, which starts with the altered chunk: the server refuses it.
    again = run_cli(tmp_path, "download", url, "-o", tmp_path / "c.bin", "--retry-delay", "0.1")
    assert_one_line_failure(again, "500", "verification")
    assert not (tmp_path / "c.bin").exists()


def test_download_of_an_unknown_upload_fails_in_one_line(server, tmp_path):
    url = server.url + "/files/tus-" + "0" * 32
    result = run_cli(tmp_path, "download", url)
    assert_one_line_failure(result, "404", "upload not found")
    assert list(tmp_path.iterdir()) == []


def test_download_of_an_unfinished_upload_fails_in_one_line(server, tmp_path):
    url = create_url(server.url, 1000, metadata(filename="half.bin"))
    assert patch(url, 0, b"x" * 300).status_code == 204
    result = run_cli(tmp_path, "download", url, "-o", tmp_path / "half.bin")
    assert_one_line_failure(result, "409", "300 of 1000 bytes")


def test_download_from_a_server_that_is_down_fails_in_one_line(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/files/tus-" + "0" * 32
    result = run_cli(tmp_path, "download", url, "--retries", "0")
    assert_one_line_failure(result, "refused")


def test_download_of_something_that_is_not_a_url_fails_in_one_line(tmp_path):
    assert_one_line_failure(run_cli(tmp_path, "download", "not a url"), "not an http(s) URL")
