"""Access control, continued: signed download links, the start-up choice, per-owner quotas,
CORS with tokens, and the `token`/`link` commands. Real tokens, real HTTP, real MinIO."""
from __future__ import annotations

import logging
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
import requests

from tus_server.app import create_app
from tus_server.config import ConfigError, Settings
from tus_server.access.links import link_query

from .helpers import OCTET, TUS, metadata, upload_id
from .minio_process import ROOT
from .test_auth import SECRET, UNKNOWN_ID, bearer, create_as, finish


@pytest.fixture
def auth_server(make_server):
    return make_server(auth="jwt", jwt_secret=SECRET, link_ttl=600)


def finished_upload(server, sub="alice", data=b"hello") -> str:
    url = create_as(server, sub, length=len(data))
    finish(url, data, sub)
    return url


def listed_download_url(server, url, sub="alice") -> str:
    uploads = requests.get(server.files_url(), headers=bearer(sub)).json()["uploads"]
    [entry] = [u for u in uploads if u["url"] == url]
    return entry["download_url"]


# ------------------------------------------------------------------ signed links
def test_listing_gives_a_signed_link_that_downloads_without_a_token(auth_server):
    url = finished_upload(auth_server)
    link = listed_download_url(auth_server, url)
    query = parse_qs(urlsplit(link).query)
    assert link.startswith(url + "?")
    assert set(query) == {"exp", "sig"}
    assert 590 <= int(query["exp"][0]) - time.time() <= 600  # TUS_LINK_TTL
    response = requests.get(link)  # no Authorization header
    assert response.status_code == 200
    assert response.content == b"hello"
    assert response.headers["Content-Disposition"] == "attachment; filename=alice.txt"
    ranged = requests.get(link, headers={"Range": "bytes=1-2"})
    assert ranged.status_code == 206 and ranged.content == b"el"


def test_unfinished_uploads_have_no_download_link(auth_server):
    url = create_as(auth_server, "alice")
    assert listed_download_url(auth_server, url) is None


def test_expired_link_is_refused(auth_server):
    url = finished_upload(auth_server)
    query = link_query(auth_server.settings, upload_id(url), ttl=60, now=time.time() - 120)
    response = requests.get(f"{url}?{query}")
    assert response.status_code == 403
    assert "expired" in response.text
    assert response.content != b"hello"


@pytest.mark.parametrize("tamper", ["sig", "exp", "other upload", "missing exp"])
def test_tampered_link_is_refused(auth_server, tamper):
    url = finished_upload(auth_server)
    other = finished_upload(auth_server, data=b"other")
    link = listed_download_url(auth_server, url)
    query = parse_qs(urlsplit(link).query)
    sig, exp = query["sig"][0], query["exp"][0]
    target = {
        "sig": f"{url}?exp={exp}&sig={sig[:-2]}{'AA' if not sig.endswith('AA') else 'BB'}",
        "exp": f"{url}?exp={int(exp) + 86400}&sig={sig}",
        "other upload": f"{other}?exp={exp}&sig={sig}",
        "missing exp": f"{url}?sig={sig}",
    }[tamper]
    response = requests.get(target)
    assert response.status_code == 403
    assert response.content not in (b"hello", b"other")
    assert response.headers["Tus-Resumable"] == "1.0.0"


@pytest.mark.parametrize("exp", ["²", "1e9", "-5", "9" * 13, ""])
def test_malformed_link_expiry_is_403_never_a_500(auth_server, exp):
    url = finished_upload(auth_server)
    response = requests.get(url, params={"exp": exp, "sig": "abc"})
    assert response.status_code == 403
    assert "malformed" in response.text


def test_link_never_allows_patch_head_or_delete(auth_server):
    url = create_as(auth_server, "alice", length=10)
    finish_half = requests.patch(url, data=b"12345", headers={**TUS, **OCTET, "Upload-Offset": "0",
                                                               **bearer()})
    assert finish_half.status_code == 204
    query = link_query(auth_server.settings, upload_id(url))
    signed = f"{url}?{query}"
    assert requests.patch(signed, data=b"67890", headers={**TUS, **OCTET,
                                                          "Upload-Offset": "5"}).status_code == 401
    assert requests.delete(signed, headers=TUS).status_code == 401
    assert requests.head(signed, headers=TUS).status_code == 401
    state = requests.head(url, headers={**TUS, **bearer()})
    assert state.status_code == 200 and state.headers["Upload-Offset"] == "5"


def test_link_stops_working_when_the_upload_is_deleted(auth_server):
    url = finished_upload(auth_server)
    link = listed_download_url(auth_server, url)
    assert requests.get(link).status_code == 200
    assert requests.delete(url, headers={**TUS, **bearer()}).status_code == 204
    response = requests.get(link)
    assert response.status_code == 404
    assert response.text == "upload not found\n"


def test_without_auth_download_urls_stay_plain(server):
    url = finished_upload(server)  # the tokens are ignored by an open server
    assert listed_download_url(server, url) == url


def test_listing_shows_the_name_the_download_uses(server):
    url = requests.post(server.files_url(), headers={
        **TUS, "Upload-Length": "2",
        "Upload-Metadata": metadata(filename="../../etc/pass\twd.txt")}).headers["Location"]
    finish(url, b"hi", "alice")
    [entry] = requests.get(server.files_url()).json()["uploads"]
    disposition = requests.get(url).headers["Content-Disposition"]
    assert entry["filename"] == "passwd.txt"
    assert disposition == f"attachment; filename={entry['filename']}"


# ------------------------------------------------------------------ start-up choice
def test_server_refuses_to_start_on_all_interfaces_without_a_choice(settings):
    with pytest.raises(ConfigError, match="TUS_AUTH=jwt .* or TUS_AUTH=none"):
        create_app(settings.with_overrides(host="0.0.0.0"))


def test_serve_command_exits_with_the_message(minio):
    env = {"PATH": "/usr/bin:/bin", "HOST": "0.0.0.0", "MINIO_ENDPOINT": minio.endpoint}
    result = subprocess.run([sys.executable, "-m", "tus_server", "serve"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "TUS_AUTH is not set" in result.stderr
    assert "Traceback" not in result.stderr


def test_gunicorn_stops_with_the_message_instead_of_restarting_workers(minio):
    env = {"PATH": "/usr/bin:/bin", "HOST": "0.0.0.0", "MINIO_ENDPOINT": minio.endpoint}
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "tus_server.wsgi:app", "--bind", "127.0.0.1:0",
         "-c", "python:tus_server.ops.gunicorn_conf", "--workers", "1"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "tus-minio: HOST=0.0.0.0 is reachable from other machines" in result.stderr
    assert "App failed to load" in result.stderr


def test_explicit_none_on_all_interfaces_starts_and_warns(settings, caplog):
    with caplog.at_level(logging.INFO, logger="tus_server.auth"):
        create_app(settings.with_overrides(host="0.0.0.0", auth="none"))
    [record] = [r for r in caplog.records if r.name == "tus_server.auth"]
    assert record.levelno == logging.WARNING and "no access control" in record.getMessage()


def test_loopback_without_a_choice_runs_open_and_says_so(settings, caplog):
    with caplog.at_level(logging.INFO, logger="tus_server.auth"):
        create_app(settings)
    [record] = [r for r in caplog.records if r.name == "tus_server.auth"]
    assert record.levelno == logging.INFO and "open to this machine only" in record.getMessage()


@pytest.mark.parametrize("overrides, message", [
    ({}, "needs TUS_JWT_SECRET"),
    ({"jwt_secret": "short"}, "at least 32 bytes"),
    ({"jwt_public_key": "/nonexistent.pem"}, "not a readable PEM"),
])
def test_jwt_mode_without_a_usable_key_does_not_start(settings, overrides, message):
    with pytest.raises(ConfigError, match=message):
        create_app(settings.with_overrides(auth="jwt", **overrides))


def test_tus_auth_accepts_only_its_two_values():
    assert Settings.from_env({"TUS_AUTH": "JWT"}).auth == "jwt"
    with pytest.raises(ConfigError, match="TUS_AUTH"):
        Settings.from_env({"TUS_AUTH": "yes"})


# ------------------------------------------------------------------ quotas
def test_unfinished_uploads_per_owner_are_limited(make_server):
    server = make_server(auth="jwt", jwt_secret=SECRET, max_uploads_per_owner=2)
    first = create_as(server, "alice")
    create_as(server, "alice")
    refused = requests.post(server.files_url(), headers={**TUS, "Upload-Length": "5", **bearer()})
    assert refused.status_code == 429
    assert "TUS_MAX_UPLOADS_PER_OWNER=2" in refused.text
    create_as(server, "bob")  # another owner has his own allowance
    finish(first, b"12345", "alice")  # a finished upload frees its place
    create_as(server, "alice")


def test_bytes_per_owner_are_limited(make_server):
    server = make_server(auth="jwt", jwt_secret=SECRET, max_bytes_per_owner=100)
    create_as(server, "alice", length=60)
    refused = requests.post(server.files_url(), headers={**TUS, "Upload-Length": "41",
                                                         **bearer()})
    assert refused.status_code == 413
    assert "TUS_MAX_BYTES_PER_OWNER" in refused.text and "60 bytes" in refused.text
    create_as(server, "alice", length=40)  # exactly up to the limit
    create_as(server, "bob", length=100)


def test_deferred_length_counts_against_the_byte_quota_when_declared(make_server):
    server = make_server(auth="jwt", jwt_secret=SECRET, max_bytes_per_owner=100)
    create_as(server, "alice", length=60)
    deferred = requests.post(server.files_url(), headers={
        **TUS, "Upload-Defer-Length": "1", **bearer()}).headers["Location"]
    declare = requests.patch(deferred, headers={**TUS, **OCTET, "Upload-Offset": "0",
                                                "Upload-Length": "50", **bearer()})
    assert declare.status_code == 413
    ok = requests.patch(deferred, headers={**TUS, **OCTET, "Upload-Offset": "0",
                                           "Upload-Length": "40", **bearer()})
    assert ok.status_code == 204


# ------------------------------------------------------------------ CORS with tokens
def test_preflight_allows_authorization_without_credentials(make_server):
    server = make_server(auth="jwt", jwt_secret=SECRET, cors_origins=("https://app.example",))
    response = requests.options(server.files_url(), headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, tus-resumable, upload-length"})
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == "https://app.example"
    allowed = response.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed
    assert "Access-Control-Allow-Credentials" not in response.headers


def test_any_origin_never_comes_with_credentials(make_server):
    server = make_server(auth="jwt", jwt_secret=SECRET, cors_origins=("*",))
    url = finished_upload(server)
    response = requests.get(url, headers={"Origin": "https://elsewhere.example", **bearer()})
    assert response.status_code == 200
    # flask-cors echoes the origin rather than `*`; what matters is that no cookie or HTTP
    # credential is ever allowed with it: the token travels in a header the page sets.
    assert response.headers["Access-Control-Allow-Origin"] == "https://elsewhere.example"
    assert "Access-Control-Allow-Credentials" not in response.headers


# ------------------------------------------------------------------ commands
def run_command(*args, **env):
    full_env = {"PATH": "/usr/bin:/bin", "TUS_JWT_SECRET": SECRET, **env}
    return subprocess.run([sys.executable, "-m", "tus_server", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=60)


def test_token_command_mints_a_token_the_server_accepts(auth_server):
    result = run_command("token", "--sub", "alice", "--scope", "upload download", "--ttl", "1h")
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice" and claims["scope"] == "upload download"
    assert claims["exp"] - claims["iat"] == 3600
    response = requests.post(auth_server.files_url(), headers={
        **TUS, "Upload-Length": "1", "Authorization": f"Bearer {token}"})
    assert response.status_code == 201


def test_token_command_refuses_unknown_scopes_and_missing_secret():
    assert run_command("token", "--sub", "a", "--scope", "root").returncode == 2
    result = run_command("token", "--sub", "a", TUS_JWT_SECRET="")
    assert result.returncode == 2 and "TUS_JWT_SECRET" in result.stderr


def test_link_command_prints_a_working_link(auth_server):
    url = finished_upload(auth_server)
    result = run_command("link", upload_id(url), "--ttl", "7d", "--base-url", auth_server.url)
    assert result.returncode == 0, result.stderr
    link = result.stdout.strip()
    exp = int(parse_qs(urlsplit(link).query)["exp"][0])
    assert abs(exp - (time.time() + 7 * 86400)) < 60
    assert requests.get(link).content == b"hello"
    assert run_command("link", UNKNOWN_ID[:-1]).returncode == 2


def test_a_final_upload_is_not_charged_again_for_its_partials(make_server):
    server = make_server(auth="jwt", jwt_secret=SECRET, max_bytes_per_owner=10,
                         max_uploads_per_owner=1)
    partial = create_as(server, "alice", length=10, extra={"Upload-Concat": "partial"})
    finish(partial, b"0123456789", "alice")
    final = requests.post(server.files_url(), headers={
        **TUS, **bearer(), "Upload-Concat": f"final;{partial}"})
    assert final.status_code == 201, final.text
    assert requests.get(final.headers["Location"], headers=bearer()).content == b"0123456789"
