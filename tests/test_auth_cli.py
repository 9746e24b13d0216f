"""The transfer CLI against a server with access control on: `--token` / `TUS_TOKEN` carry the
bearer token through upload, ls, download and rm; without one the CLI fails in one line."""
from __future__ import annotations

import os

from .cli_helpers import assert_ok, assert_one_line_failure, run_cli
from .test_auth import SECRET, create_as, make_token


def test_cli_with_a_token_uploads_lists_downloads_and_removes_only_its_own(make_server, tmp_path):
    server = make_server(auth="jwt", jwt_secret=SECRET)
    bobs = create_as(server, "bob")
    data = os.urandom(300_000)
    source = tmp_path / "alice.bin"
    source.write_bytes(data)
    env = {"TUS_TOKEN": make_token("alice", ttl=600), "TUS_ENDPOINT": server.files_url()}

    url = assert_ok(run_cli(tmp_path, "upload", source, "-q", env=env)).splitlines()[-1]
    listed = assert_ok(run_cli(tmp_path, "ls", "-q", env=env)).split()
    assert listed == [url.rsplit("/", 1)[-1]]  # not bob's
    out = tmp_path / "copy.bin"
    assert_ok(run_cli(tmp_path, "download", url, "-o", out, "-q", env=env))
    assert out.read_bytes() == data
    assert_one_line_failure(run_cli(tmp_path, "rm", bobs, env=env), "404")
    assert_ok(run_cli(tmp_path, "rm", url, env=env))
    assert assert_ok(run_cli(tmp_path, "ls", "-q", env=env)) == ""


def test_cli_without_a_token_fails_in_one_line(make_server, tmp_path):
    server = make_server(auth="jwt", jwt_secret=SECRET)
    source = tmp_path / "a.bin"
    source.write_bytes(b"abc")
    result = run_cli(tmp_path, "upload", source, "--endpoint", server.files_url(), "--retries", "0")
    assert_one_line_failure(result, "401")
    assert_one_line_failure(run_cli(tmp_path, "ls", "--endpoint", server.files_url()), "401")
