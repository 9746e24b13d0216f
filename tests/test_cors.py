"""CORS: TUS_CORS_ORIGINS lets pages on other origins use the tus endpoint and read its headers.

Without it only the server's own origin may (no Access-Control-* headers at all); an origin
not on the list gets none either, so the browser refuses to hand it the response.
(tests/browser/test_cross_origin.py does the same from a real page on another origin.)
"""
from __future__ import annotations

import pytest
import requests

from tus_server.config import Settings

from .helpers import MIB, TUS, create, create_url, metadata, patch

PAGE = "http://127.0.0.1:8123"
OTHER = "http://evil.example"
TUS_REQUEST_HEADERS = "tus-resumable, upload-length, upload-metadata, upload-offset, content-type"
MUST_EXPOSE = {"location", "upload-offset", "upload-length", "upload-metadata", "upload-expires",
               "upload-defer-length", "upload-concat", "tus-version", "tus-resumable",
               "tus-max-size", "tus-extension"}


def preflight(url: str, origin: str, method: str = "POST") -> requests.Response:
    return requests.options(url, headers={
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": TUS_REQUEST_HEADERS,
    })


def header_set(response: requests.Response, name: str) -> set[str]:
    return {v.strip().lower() for v in response.headers.get(name, "").split(",") if v.strip()}


def test_settings_read_a_comma_list_of_origins():
    settings = Settings.from_env({"TUS_CORS_ORIGINS": " http://a.test:8080, https://b.test ,"})
    assert settings.cors_origins == ("http://a.test:8080", "https://b.test")
    assert Settings.from_env({}).cors_origins == ()


def test_without_cors_origins_no_origin_gets_access(server):
    response = create(server.url, 10, headers={"Origin": PAGE})
    assert response.status_code == 201
    assert "Access-Control-Allow-Origin" not in response.headers
    pre = preflight(server.files_url(), PAGE)
    assert pre.status_code in (200, 204)
    assert "Access-Control-Allow-Origin" not in pre.headers
    assert "Access-Control-Allow-Methods" not in pre.headers


@pytest.mark.parametrize("method", ["POST", "PATCH", "HEAD", "DELETE"])
def test_preflight_from_an_allowed_origin_allows_the_tus_requests(make_server, method):
    server = make_server(cors_origins=(PAGE,))
    response = preflight(server.files_url() + "tus-" + "0" * 32, PAGE, method) \
        if method != "POST" else preflight(server.files_url(), PAGE, method)
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert method in {m.upper() for m in header_set(response, "Access-Control-Allow-Methods")}
    assert set(TUS_REQUEST_HEADERS.split(", ")) <= header_set(response, "Access-Control-Allow-Headers")
    assert int(response.headers["Access-Control-Max-Age"]) > 0


def test_tus_responses_to_an_allowed_origin_expose_the_tus_headers(make_server):
    server = make_server(cors_origins=(PAGE,), max_size=10 * MIB)
    origin = {"Origin": PAGE}
    created = create(server.url, 5, metadata(filename="a.txt"), headers=origin)
    assert created.status_code == 201
    url = created.headers["Location"]
    patched = patch(url, 0, b"hello", headers=origin)
    assert patched.status_code == 204
    headed = requests.head(url, headers={**TUS, **origin})
    assert headed.status_code == 200
    for response in (created, patched, headed):
        assert response.headers["Access-Control-Allow-Origin"] == PAGE
        assert MUST_EXPOSE <= header_set(response, "Access-Control-Expose-Headers")
    # Downloads and the listing are readable too, with what a download needs to show.
    download = requests.get(url, headers=origin)
    assert download.content == b"hello"
    assert download.headers["Access-Control-Allow-Origin"] == PAGE
    assert {"content-disposition", "content-range"} <= header_set(download, "Access-Control-Expose-Headers")
    listing = requests.get(server.url + "/files", headers=origin)
    assert listing.headers["Access-Control-Allow-Origin"] == PAGE


def test_error_answers_to_an_allowed_origin_are_readable(make_server):
    """The browser hides a response without Access-Control-Allow-Origin, error text included."""
    server = make_server(cors_origins=(PAGE,), max_size=100)
    too_big = create(server.url, 101, headers={"Origin": PAGE})
    assert too_big.status_code == 413
    assert too_big.headers["Access-Control-Allow-Origin"] == PAGE
    assert "larger than Tus-Max-Size 100" in too_big.text
    missing = requests.head(server.files_url() + "tus-" + "0" * 32, headers={**TUS, "Origin": PAGE})
    assert missing.status_code == 404
    assert missing.headers["Access-Control-Allow-Origin"] == PAGE


def test_an_origin_not_on_the_list_gets_no_access(make_server):
    server = make_server(cors_origins=(PAGE, "https://other.test"))
    pre = preflight(server.files_url(), OTHER)
    assert "Access-Control-Allow-Origin" not in pre.headers
    assert "Access-Control-Allow-Methods" not in pre.headers
    created = create(server.url, 3, headers={"Origin": OTHER})
    assert "Access-Control-Allow-Origin" not in created.headers
    assert "Access-Control-Expose-Headers" not in created.headers
    # A near miss is a miss: another port, another scheme.
    for near in ("http://127.0.0.1:8124", "https://127.0.0.1:8123"):
        assert "Access-Control-Allow-Origin" not in preflight(server.files_url(), near).headers
    # Both listed origins are allowed; the answer depends on Origin, and says so to caches.
    for origin in (PAGE, "https://other.test"):
        allowed = create(server.url, 3, headers={"Origin": origin})
        assert allowed.headers["Access-Control-Allow-Origin"] == origin
        assert "origin" in header_set(allowed, "Vary")


def test_wildcard_allows_every_origin(make_server):
    server = make_server(cors_origins=("*",))
    pre = preflight(server.files_url(), OTHER, "PATCH")
    assert pre.headers["Access-Control-Allow-Origin"] in ("*", OTHER)
    assert "PATCH" in {m.upper() for m in header_set(pre, "Access-Control-Allow-Methods")}
    url = create_url(server.url, 3)
    headed = requests.head(url, headers={**TUS, "Origin": OTHER})
    assert headed.headers["Access-Control-Allow-Origin"] in ("*", OTHER)
    assert "upload-offset" in header_set(headed, "Access-Control-Expose-Headers")


def test_single_allowed_origin_answers_vary_origin(make_server):
    origin = "http://127.0.0.1:1"
    server = make_server(cors_origins=(origin,))
    response = requests.options(server.files_url(), headers={"Origin": origin})
    assert "Origin" in response.headers.get("Vary", "")
    assert response.headers["Access-Control-Allow-Origin"] == origin
