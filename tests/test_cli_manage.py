"""`tus-minio ls`, `rm` and `--token`/`TUS_TOKEN`, against a real server and MinIO."""
from __future__ import annotations

import re

import pytest
import requests

from tus_server.app import create_app

from .cli_helpers import KIB, MIB, assert_ok, assert_one_line_failure, run_cli, upload
from .helpers import TUS, ThreadedServer, create_url, head, metadata, patch, random_bytes, \
    sha256, upload_id


def rows(stdout: str) -> list[list[str]]:
    """The table's lines split on the two-space column gaps."""
    return [re.split(r"\s{2,}", line.strip()) for line in stdout.strip().splitlines()]


def test_ls_shows_the_uploads_newest_first(server, tmp_path):
    done = upload(server.url, random_bytes(3 * MIB), "done file.bin")
    half = create_url(server.url, 5000, metadata(filename="half.bin"))
    assert patch(half, 0, b"x" * 1000).status_code == 204

    result = run_cli(tmp_path, "ls", "--endpoint", server.files_url())

    table = rows(assert_ok(result))
    assert table[0] == ["ID", "FILENAME", "SIZE", "RECEIVED", "COMPLETED", "EXPIRES"]
    assert [row[:5] for row in table[1:]] == [
        [upload_id(half), "half.bin", "4.88 KiB", "1000 B (20%)", "no"],
        [upload_id(done), "done file.bin", "3.00 MiB", "3.00 MiB (100%)", "yes"],
    ]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", table[1][5])  # unfinished: expires
    assert table[2][5] == "-"


def test_ls_quiet_prints_only_ids_and_an_empty_server_prints_none(server, tmp_path):
    assert run_cli(tmp_path, "ls", "--endpoint", server.files_url(), "-q").stdout == ""
    empty = run_cli(tmp_path, "ls", "--endpoint", server.files_url())
    assert assert_ok(empty) == "" and "no uploads" in empty.stderr
    urls = [upload(server.url, b"a", "a.txt"), upload(server.url, b"b", "b.txt")]
    ids = assert_ok(run_cli(tmp_path, "ls", "--endpoint", server.files_url(), "-q")).split("\n")
    assert ids == [upload_id(url) for url in reversed(urls)]


def test_ls_follows_the_pages(server, tmp_path):
    urls = [upload(server.url, b"%d" % i, f"{i}.txt") for i in range(5)]
    ids = assert_ok(run_cli(tmp_path, "ls", "--endpoint", server.files_url(), "-q",
                            "--page-size", "2")).split("\n")
    assert ids == [upload_id(url) for url in reversed(urls)]  # 3 pages, in order, none twice


def test_ls_of_a_server_that_is_down_fails_in_one_line(tmp_path):
    from .minio_process import free_port

    result = run_cli(tmp_path, "ls", "--endpoint", f"http://127.0.0.1:{free_port()}/files/",
                     "--retries", "0")
    assert_one_line_failure(result, "refused")


def test_rm_removes_by_url_and_by_id(server, tmp_path):
    by_url = upload(server.url, random_bytes(10 * KIB), "one.bin")
    by_id = upload(server.url, random_bytes(10 * KIB), "two.bin")
    kept = upload(server.url, random_bytes(10 * KIB), "three.bin")

    result = run_cli(tmp_path, "rm", by_url, upload_id(by_id), "--endpoint", server.files_url())

    assert assert_ok(result).split("\n") == [by_url, server.files_url() + upload_id(by_id)]
    assert head(by_url).status_code == 404 and head(by_id).status_code == 404
    assert head(kept).status_code == 200
    assert server.store.list_ids() == [upload_id(kept)]


def test_rm_reports_each_failure_and_still_removes_the_rest(server, tmp_path):
    real = upload(server.url, b"data", "real.bin")
    unknown = server.files_url() + "tus-" + "0" * 32

    result = run_cli(tmp_path, "rm", unknown, "not an id", real, "--endpoint", server.files_url())

    assert result.returncode == 1 and "Traceback" not in result.stderr
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("error: DELETE " + unknown + " answered 404")
    assert errors[1].startswith("error: 'not an id' is not an http(s) URL nor an upload id")
    assert result.stdout.strip() == real
    assert head(real).status_code == 404


class AuthorizationRecorder:
    """WSGI middleware noting (method, Authorization) of every request the app receives."""

    def __init__(self, app):
        self.app = app
        self.seen: list[tuple[str, str]] = []

    def __call__(self, environ, start_response):
        self.seen.append((environ["REQUEST_METHOD"], environ.get("HTTP_AUTHORIZATION", "")))
        return self.app(environ, start_response)


@pytest.fixture
def recording_server(settings, store):
    app = create_app(settings, store)
    recorder = AuthorizationRecorder(app.wsgi_app)
    app.wsgi_app = recorder
    served = ThreadedServer(app)
    yield served.url + "/files/", recorder
    served.stop()


def test_every_command_sends_the_token(recording_server, tmp_path):
    endpoint, recorder = recording_server
    data = random_bytes(300 * KIB)
    path = tmp_path / "secret.bin"
    path.write_bytes(data)
    env = {"TUS_TOKEN": "s3cret", "TUS_ENDPOINT": endpoint}

    url = assert_ok(run_cli(tmp_path, "upload", path, "--chunk-size", "100K", env=env))
    out = tmp_path / "back.bin"
    assert_ok(run_cli(tmp_path, "download", url, "-o", out, env=env))
    assert_ok(run_cli(tmp_path, "ls", env=env))
    methods = {method for method, _ in recorder.seen}
    assert {"POST", "PATCH", "GET"} <= methods
    assert {auth for _, auth in recorder.seen} == {"Bearer s3cret"}
    assert sha256(out.read_bytes()) == sha256(data)

    recorder.seen.clear()
    assert_ok(run_cli(tmp_path, "rm", url, "--token", "from-the-option", env=env))
    assert recorder.seen == [("DELETE", "Bearer from-the-option")]  # the option wins
    assert requests.head(url, headers=TUS).status_code == 404


def test_without_a_token_no_authorization_is_sent(recording_server, tmp_path):
    endpoint, recorder = recording_server
    assert_ok(run_cli(tmp_path, "ls", "--endpoint", endpoint))
    assert recorder.seen == [("GET", "")]
