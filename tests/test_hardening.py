"""The security audit's hardening list (issue 13): one behaviour per test, real HTTP, real MinIO.

A server pointed at a MinIO that is not there (`DEAD_MINIO`) answers 503 as soon as it asks
MinIO anything; a 404 from it proves a request was refused before MinIO was asked.
"""
from __future__ import annotations

import logging
import re
import socket
import time
from urllib.parse import urlparse

import pytest
import requests

from tus_server.config import ConfigError, Settings

from .helpers import OCTET, TUS, create, create_url, head, metadata, patch, upload_id

DEAD_MINIO = "127.0.0.1:1"
TIB = 1024 ** 4


def create_partial(base: str, data: bytes) -> str:
    url = create_url(base, len(data), headers={"Upload-Concat": "partial"})
    if data:
        assert patch(url, 0, data).status_code == 204
    return url


def create_final(base: str, urls: list[str]) -> requests.Response:
    return create(base, headers={"Upload-Concat": "final;" + " ".join(urls)})


def raw_request(url: str, head_lines: list[str], body: bytes = b"",
                timeout: float = 10) -> tuple[int, bytes]:
    """Send a request byte for byte (headers `requests` would rewrite); status and raw answer
    (read until the server closes the connection)."""
    parsed = urlparse(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout) as sock:
        request = "\r\n".join([*head_lines, f"Host: {parsed.netloc}", "Connection: close", "", ""])
        sock.sendall(request.encode() + body)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return int(answer.split(b" ", 2)[1]), answer


# ------------------------------------------------------------------ 1. concatenation limits
def test_final_naming_a_partial_twice_is_400(server):
    a, b = create_partial(server.url, b"abc"), create_partial(server.url, b"de")
    response = create_final(server.url, [a, b, a])
    assert response.status_code == 400
    assert "twice" in response.text
    assert response.headers["Content-Type"].startswith("text/plain")


def test_final_naming_more_than_max_partials_is_400(make_server):
    server = make_server(max_partials=2)
    urls = [create_partial(server.url, bytes([65 + n])) for n in range(3)]
    assert create_final(server.url, urls[:2]).status_code == 201
    response = create_final(server.url, urls)
    assert response.status_code == 400
    assert "TUS_MAX_PARTIALS" in response.text


def test_max_partials_defaults_to_100_and_reads_the_environment():
    assert Settings().max_partials == 100
    assert Settings.from_env({"TUS_MAX_PARTIALS": "7"}).max_partials == 7


def test_final_past_max_size_is_still_413(make_server):
    server = make_server(max_size=4)
    urls = [create_partial(server.url, b"abc"), create_partial(server.url, b"de")]
    response = create_final(server.url, urls)
    assert response.status_code == 413


# ------------------------------------------------------------------ 2. a default maximum size
def test_default_max_size_is_one_tib_and_advertised(server):
    assert Settings().max_size == TIB
    assert Settings.from_env({}).max_size == TIB
    response = requests.options(server.files_url())
    assert response.headers["Tus-Max-Size"] == str(TIB)
    assert requests.get(server.url + "/config").json()["maxSize"] == TIB


def test_max_size_zero_set_explicitly_means_no_limit(make_server):
    assert Settings.from_env({"TUS_MAX_SIZE": "0"}).max_size == 0
    server = make_server(max_size=0)
    assert "Tus-Max-Size" not in requests.options(server.files_url()).headers
    assert create(server.url, 2**64 - 1).status_code == 201


def test_upload_length_2_64_minus_1_is_413_by_default(server, store):
    before = len(store.list_ids())
    response = create(server.url, 2**64 - 1)
    assert response.status_code == 413
    assert f"Tus-Max-Size {TIB}" in response.text
    assert len(store.list_ids()) == before


def test_deferred_length_past_the_default_max_is_413(server):
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    response = patch(url, 0, b"", headers={"Upload-Length": str(2**64 - 1)})
    assert response.status_code == 413
    assert head(url).headers["Upload-Defer-Length"] == "1"


def test_deferred_body_past_the_default_max_is_413_before_it_is_read(server):
    url = create_url(server.url, headers={"Upload-Defer-Length": "1"})
    status, _ = raw_request(url, [
        f"PATCH {urlparse(url).path} HTTP/1.1", "Tus-Resumable: 1.0.0", "Upload-Offset: 0",
        "Content-Type: application/offset+octet-stream", f"Content-Length: {TIB + 1}"])
    assert status == 413
    assert head(url).headers["Upload-Offset"] == "0"


# ------------------------------------------------------------------ 3. empty uploads expire
def test_zero_length_upload_expires_and_is_swept(make_server, store):
    server = make_server(expiration=1, cleanup_interval=1)
    empty = create_url(server.url, 0)
    finished = create_url(server.url, 3)
    assert patch(finished, 0, b"abc").status_code == 204
    listed = {u["id"]: u for u in requests.get(server.files_url()).json()["uploads"]}
    assert listed[upload_id(empty)]["completed"] is True
    assert listed[upload_id(empty)]["expires"] is not None
    assert listed[upload_id(finished)]["expires"] is None
    deadline = time.time() + 15
    while time.time() < deadline and upload_id(empty) in store.list_ids():
        time.sleep(0.3)
    assert head(empty).status_code == 404
    assert requests.get(finished).content == b"abc"  # TUS_RETENTION=0 keeps finished files


def test_zero_length_final_upload_expires_but_a_final_with_bytes_is_kept(make_server):
    server = make_server(expiration=1)
    empty_final = create_final(server.url, [create_partial(server.url, b"")])
    full_final = create_final(server.url, [create_partial(server.url, b"abc")])
    assert empty_final.status_code == full_final.status_code == 201
    time.sleep(1.5)

    removed = server.store.expire(time.time())
    assert upload_id(empty_final.headers["Location"]) in removed
    assert upload_id(full_final.headers["Location"]) not in removed
    assert requests.get(full_final.headers["Location"]).content == b"abc"


# ------------------------------------------------------------------ 4. refused creations leave nothing
@pytest.mark.parametrize("headers, body, status", [
    ({"Upload-Length": "3", **OCTET}, b"0123456789", 413),
    ({"Upload-Length": "5", "Content-Type": "text/plain"}, b"01234", 415),
    ({"Upload-Length": "5", **OCTET, "Upload-Checksum": "whirlpool AAAA"}, b"01234", 400),
    ({"Upload-Defer-Length": "1", **OCTET}, b"0123456789", 413),
], ids=["longer-than-length", "wrong-content-type", "bad-checksum", "past-max-size"])
def test_refused_creation_with_upload_leaves_no_upload(make_server, store, headers, body, status):
    server = make_server(max_size=5)
    before = store.list_ids()
    response = requests.post(server.files_url(), headers={**TUS, **headers}, data=body)
    assert response.status_code == status, response.text
    assert "Location" not in response.headers
    assert store.list_ids() == before


# ------------------------------------------------------------------ 5. method override on POST only
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS"])
def test_method_override_is_ignored_on_safe_methods(server, method):
    url = create_url(server.url, 10)
    response = requests.request(method, url, headers={**TUS, "X-HTTP-Method-Override": "DELETE"})
    assert response.status_code != 204 or method == "OPTIONS"
    assert head(url).status_code == 200


def test_method_override_on_post_still_works(server):
    url = create_url(server.url, 3)
    response = requests.post(url, data=b"abc", headers={
        **TUS, **OCTET, "Upload-Offset": "0", "X-HTTP-Method-Override": "PATCH"})
    assert response.status_code == 204
    assert response.headers["Upload-Offset"] == "3"


# ------------------------------------------------------------------ 6. Host header, proxies
def test_untrusted_host_on_a_loopback_server_is_400(server, store):
    before = store.list_ids()
    response = create(server.url, 10, headers={"Host": "rebound.example"})
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "TUS_TRUSTED_HOSTS" in response.text
    assert store.list_ids() == before
    assert requests.get(server.url + "/", headers={"Host": "rebound.example:5000"}).status_code == 400


@pytest.mark.parametrize("host", ["127.0.0.1:1", "localhost", "localhost:5000", "[::1]:5000",
                                  "LOCALHOST:80"])
def test_loopback_names_on_any_port_are_trusted(server, host):
    assert requests.get(server.files_url(), headers={"Host": host}).status_code == 200


def test_server_bound_to_another_address_takes_any_host(make_server):
    server = make_server(host="0.0.0.0", auth="none")  # open on purpose (secure by default)
    assert requests.get(server.files_url(), headers={"Host": "files.example"}).status_code == 200


def test_trusted_hosts_setting_replaces_the_default(make_server):
    settings = Settings.from_env({"TUS_TRUSTED_HOSTS": "Files.Example, .cdn.example"})
    assert settings.accepted_hosts() == ("files.example", ".cdn.example")
    assert Settings.from_env({"TUS_TRUSTED_HOSTS": "*"}).accepted_hosts() == ()
    server = make_server(trusted_hosts=settings.trusted_hosts)
    for host, status in [("files.example:8443", 200), ("eu.cdn.example", 200),
                         ("cdn.example.evil", 400), ("127.0.0.1", 400)]:
        assert requests.get(server.files_url(), headers={"Host": host}).status_code == status, host


FORWARDED = {"X-Forwarded-Host": "files.example", "X-Forwarded-Proto": "https",
             "X-Forwarded-Prefix": "/tus"}


def test_forwarded_headers_are_ignored_by_default(server):
    location = create(server.url, 10, headers=FORWARDED).headers["Location"]
    assert location.startswith(server.url + "/files/")


def test_behind_proxy_location_follows_forwarded_headers(make_server):
    assert Settings.from_env({"TUS_BEHIND_PROXY": "1"}).behind_proxy is True
    server = make_server(behind_proxy=True, trusted_hosts=("files.example",))
    response = create(server.url, 10, headers=FORWARDED)
    assert response.status_code == 201, response.text
    assert re.fullmatch(r"https://files\.example/tus/files/tus-[0-9a-f]{32}",
                        response.headers["Location"])


# ------------------------------------------------------------------ 7. exact CORS origins
@pytest.mark.parametrize("value", [
    "https://*.example.com", "https://app.example.com/", "app.example.com",
    "https://app.example.com$", "https://(a|b).example.com", "*,https://a.test"])
def test_cors_origin_that_is_not_an_exact_origin_is_refused_at_start(value):
    with pytest.raises(ConfigError, match="TUS_CORS_ORIGINS"):
        Settings.from_env({"TUS_CORS_ORIGINS": value})


def test_cors_origins_accept_exact_origins_and_the_single_star():
    assert Settings.from_env({"TUS_CORS_ORIGINS": "*"}).cors_origins == ("*",)
    value = "https://app.example.com:8443,http://[::1]:8123,http://127.0.0.1:5173"
    assert Settings.from_env({"TUS_CORS_ORIGINS": value}).cors_origins == tuple(value.split(","))


def test_cors_origin_matches_itself_and_nothing_else(make_server):
    server = make_server(cors_origins=("http://[::1]:8123",))

    def allowed(origin: str) -> str | None:
        return requests.options(server.files_url(), headers={
            "Origin": origin, "Access-Control-Request-Method": "POST"}
        ).headers.get("Access-Control-Allow-Origin")

    assert allowed("http://[::1]:8123") == "http://[::1]:8123"
    assert allowed("http://1:8123") is None  # `[::1]` read as a character class
    assert allowed("http://[::1]:81234") is None


# ------------------------------------------------------------------ 8. ids are matched whole
@pytest.mark.parametrize("method", ["HEAD", "PATCH", "DELETE", "GET"])
@pytest.mark.parametrize("storage", ["live", "dead"])
def test_id_with_a_trailing_newline_is_404_before_minio_is_asked(make_server, method, storage):
    server = make_server() if storage == "live" else make_server(minio_endpoint=DEAD_MINIO)
    url = server.files_url() + "tus-" + "0123456789abcdef" * 2 + "%0A"
    headers = {**TUS, **OCTET, "Upload-Offset": "0"} if method == "PATCH" else TUS
    response = requests.request(method, url, headers=headers, timeout=30)
    assert response.status_code == 404


def test_id_check_uses_the_whole_value():
    from tus_server.storage.store import is_upload_id

    good = "tus-" + "ab" * 16
    assert is_upload_id(good)
    assert not is_upload_id(good + "\n")
    assert not is_upload_id(good.upper())


# ------------------------------------------------------------------ 9. log lines cannot be forged
def test_request_path_cannot_forge_a_log_line(server, caplog):
    caplog.set_level(logging.INFO, logger="tus_server")
    forged = "%0A2026-01-01 00:00:00 INFO tus_server created upload_id=forged"
    for method in ("GET", "HEAD"):
        requests.request(method, server.files_url() + "tus-x" + forged, headers=TUS)
    requests.patch(server.files_url() + "tus-" + "0" * 32 + forged, headers=TUS)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("tus_server")]
    assert any("upload_id=forged" in m for m in messages)
    for message in messages:
        assert "\n" not in message and "\r" not in message, message


# ------------------------------------------------------------------ 10. response headers, codings
def test_download_is_sandboxed_and_not_sniffed(server):
    url = create_url(server.url, 5, meta=metadata(filetype="text/html"))
    assert patch(url, 0, b"<b>x!").status_code == 204
    response = requests.get(url)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.headers["Content-Security-Policy"] == "sandbox"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_page_cannot_be_framed(server):
    response = requests.get(server.url + "/")
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_upload_list_is_not_cached(server):
    response = requests.get(server.files_url())
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("coding", ["gzip, chunked", "gzip", "chunked, chunked"])
def test_unknown_transfer_coding_is_501(server, store, coding):
    before = store.list_ids()
    status, answer = raw_request(server.files_url(), [
        "POST /files/ HTTP/1.1", "Tus-Resumable: 1.0.0", "Upload-Length: 5",
        "Content-Type: application/offset+octet-stream", f"Transfer-Encoding: {coding}"],
        b"5\r\nhello\r\n0\r\n\r\n")
    assert status == 501
    assert b"Transfer-Encoding" in answer
    assert store.list_ids() == before


# ------------------------------------------------------------------ 11. storage errors say little
def test_storage_errors_do_not_name_minio(make_server):
    server = make_server(minio_endpoint=DEAD_MINIO)
    response = create(server.url, 10, timeout=60)
    assert response.status_code == 503
    assert response.text.strip() == "storage unavailable, retry later"
    health = requests.get(server.url + "/healthz", timeout=60)
    assert health.status_code == 503
    assert health.json() == {"status": "storage unavailable",
                             "conditional_writes": "not checked yet"}
    for text in (response.text, health.text):
        assert DEAD_MINIO not in text and "Error" not in text


def test_healthy_healthz_does_not_name_minio(server):
    response = requests.get(server.url + "/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "conditional_writes": "enforced"}
