"""The audit's low items (issue 17, item 9): credentials at rest in the outbox, the /metrics
method label, the CLI and symlinked .part files, the ASCII download name, X-Forwarded-Prefix,
and the Content-Type of a HEAD."""
from __future__ import annotations

import os
import secrets
from urllib.parse import urlparse

import pytest
import requests

from .cli_helpers import assert_ok, assert_one_line_failure, run_cli, upload, write_part_state
from .helpers import TUS, create, create_url, metadata, patch
from .hook_receiver import closed_port_url
from .test_hooks import hook_server  # noqa: F401  (a fixture)
from .test_metrics import scrape


# ----------------------------------------------------------------------------- outbox
def _stored_events(server) -> list[bytes]:
    client, bucket = server.store.client, server.settings.system_bucket
    names = [o.object_name for o in client.list_objects(bucket, prefix="outbox/")]
    return [client.get_object(bucket, name).read() for name in names]


@pytest.mark.parametrize("forward", [(), ("Authorization",)], ids=["default", "forwarded"])
def test_outbox_keeps_credentials_only_when_forwarding_asks(hook_server, forward):
    # Nobody listens: post-finish waits in the outbox, where it can be read.
    server = hook_server(closed_port_url(), hooks_enabled=("post-finish",),
                         hooks_forward_headers=forward, hooks_backoff=30)
    secret = "Bearer " + secrets.token_hex(8)
    caller = {"Authorization": secret, "Cookie": "session=" + secrets.token_hex(8),
              "X-Tenant": "t1"}
    url = create_url(server.url, 4, headers=caller)
    assert patch(url, 0, b"data", headers=caller).status_code == 204
    [event] = _stored_events(server)
    assert caller["Cookie"].encode() not in event
    assert b"X-Tenant" in event  # the other headers are tusd's event as ever
    if forward:
        assert event.count(secret.encode()) == 2  # in the event's request and the forwarded set
    else:
        assert secret.encode() not in event


# ----------------------------------------------------------------------------- metrics
def test_metrics_method_label_takes_only_known_methods(make_server):
    server = make_server()
    for _ in range(20):
        requests.post(server.files_url(), headers={
            **TUS, "X-HTTP-Method-Override": "M" + secrets.token_hex(6)})
    values = scrape(server.url)
    methods = {dict(labels).get("method") for (name, labels) in values
               if name == "tusd_requests_total"}
    assert methods <= {"GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS", "other"}, methods
    assert values[("tusd_requests_total", (("method", "other"),))] >= 20


# ----------------------------------------------------------------------------- CLI download
@pytest.mark.parametrize("which", [".part", ".part.json"])
def test_download_refuses_a_symlinked_part_file(server, tmp_path, which):
    url = upload(server.url, b"the real file", "victim.bin")
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"precious\n")
    out = tmp_path / "victim.bin"
    if which == ".part.json":
        (tmp_path / "victim.bin.part").write_bytes(b"the ")
    os.symlink(elsewhere, str(out) + which)
    for force in ((), ("--force",)):
        result = run_cli(tmp_path, "download", url, "-o", out, *force)
        assert_one_line_failure(result, "symbolic link")
        assert elsewhere.read_bytes() == b"precious\n"
        assert not out.exists()


def test_download_still_resumes_a_real_part_file(server, tmp_path):
    data = os.urandom(100_000)
    url = upload(server.url, data, "resume.bin")
    out = tmp_path / "resume.bin"
    etag = requests.get(url).headers["ETag"]
    (tmp_path / "resume.bin.part").write_bytes(data[:40_000])
    write_part_state(out, url, etag)
    assert_ok(run_cli(tmp_path, "download", url, "-o", out))
    assert out.read_bytes() == data


# ----------------------------------------------------------------------------- downloads
def test_ascii_download_name_is_reduced_after_folding(server):
    url = upload(server.url, b"x", "．．／．．／escaped")  # fullwidth dots and solidus
    disposition = requests.get(url).headers["Content-Disposition"]
    ascii_name = disposition.split("filename=", 1)[1].split(";", 1)[0].strip('"')
    assert ascii_name == "escaped", disposition
    assert "filename*=UTF-8''" in disposition  # the real name, percent-encoded, as before


# ----------------------------------------------------------------------------- proxies
@pytest.mark.parametrize("prefix", ["//evil.example", "https://evil.example/x", "/ok\\..\\x",
                                    "/a,//evil.example"])
def test_forwarded_prefix_that_is_not_a_path_is_ignored(make_server, prefix):
    server = make_server(behind_proxy=True)
    location = create(server.url, 1, headers={"X-Forwarded-Prefix": prefix}).headers["Location"]
    parts = urlparse(location)
    assert parts.netloc == urlparse(server.url).netloc, location
    assert parts.path.startswith("/files/tus-"), location


def test_forwarded_prefix_that_is_a_path_is_used(make_server):
    server = make_server(behind_proxy=True)
    location = create(server.url, 1, headers={"X-Forwarded-Prefix": "/up"}).headers["Location"]
    assert urlparse(location).path.startswith("/up/files/tus-"), location


# ----------------------------------------------------------------------------- HEAD
def test_tus_and_ietf_head_carry_no_content_type(server):
    url = upload(server.url, b"done", "typed.txt")
    tus = requests.head(url, headers=TUS)
    assert tus.status_code == 200 and "Content-Type" not in tus.headers, tus.headers
    ietf = requests.head(url, headers={"Upload-Draft-Interop-Version": "6"})
    assert ietf.status_code in (200, 204) and "Content-Type" not in ietf.headers, ietf.headers
    # A plain HEAD asks about the download: it keeps the file's type.
    assert requests.head(url).headers["Content-Type"] == "application/octet-stream"
    unfinished = create_url(server.url, 10, metadata(filename="open.bin"))
    assert "Content-Type" not in requests.head(unfinished, headers=TUS).headers
