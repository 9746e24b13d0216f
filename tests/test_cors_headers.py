"""CORS request headers as tusd allows them: its default list (X-Request-ID from tus-js-client's
`addRequestId`, Authorization, method override...), plus TUS_CORS_ALLOW_HEADERS; and the
response headers clients read are exposed. (tests/test_cors.py covers origins; the browser side
is in tests/browser/test_cross_origin.py.)"""
from __future__ import annotations

import pytest
import requests

from tus_server.config import ConfigError, Settings

from .helpers import TUS, create

PAGE = "http://127.0.0.1:8123"


def preflight(url: str, headers: str, method: str = "POST") -> requests.Response:
    return requests.options(url, headers={"Origin": PAGE, "Access-Control-Request-Method": method,
                                          "Access-Control-Request-Headers": headers})


def header_set(response: requests.Response, name: str) -> set[str]:
    return {v.strip().lower() for v in response.headers.get(name, "").split(",") if v.strip()}


@pytest.mark.parametrize("name", ["X-Request-ID", "Authorization", "X-HTTP-Method-Override",
                                  "Upload-Checksum", "Upload-Concat", "Upload-Defer-Length"])
def test_preflight_allows_tusd_and_tus_headers(make_server, name):
    server = make_server(cors_origins=(PAGE,))
    response = preflight(server.files_url(), f"tus-resumable, content-type, {name.lower()}")
    assert response.status_code in (200, 204)
    assert response.headers["Access-Control-Allow-Origin"] == PAGE
    assert name.lower() in header_set(response, "Access-Control-Allow-Headers")
    assert "tus-resumable" in header_set(response, "Access-Control-Allow-Headers")


def test_preflight_leaves_out_headers_nobody_allowed(make_server):
    server = make_server(cors_origins=(PAGE,))
    response = preflight(server.files_url(), "tus-resumable, x-tenant, x-request-id-extra")
    allowed = header_set(response, "Access-Control-Allow-Headers")
    assert "tus-resumable" in allowed
    assert "x-tenant" not in allowed
    assert "x-request-id-extra" not in allowed  # names are not prefixes


def test_configured_extra_headers_are_allowed(make_server):
    server = make_server(cors_origins=(PAGE,), cors_allow_headers=("X-Tenant", "X-B3-TraceId"))
    response = preflight(server.files_url(), "tus-resumable, x-tenant, x-b3-traceid, x-other")
    allowed = header_set(response, "Access-Control-Allow-Headers")
    assert {"tus-resumable", "x-tenant", "x-b3-traceid"} <= allowed
    assert "x-other" not in allowed


def test_cors_allow_headers_is_read_from_the_environment():
    settings = Settings.from_env({"TUS_CORS_ALLOW_HEADERS": " X-Tenant , X-B3-TraceId,"})
    assert settings.cors_allow_headers == ("X-Tenant", "X-B3-TraceId")
    assert Settings.from_env({}).cors_allow_headers == ()
    with pytest.raises(ConfigError):
        Settings.from_env({"TUS_CORS_ALLOW_HEADERS": "X-Ok, not a header"})


def test_actual_request_exposes_what_clients_read(make_server):
    server = make_server(cors_origins=(PAGE,))
    response = create(server.url, 10, headers={"Origin": PAGE, "X-Request-ID": "abc"})
    assert response.status_code == 201
    exposed = header_set(response, "Access-Control-Expose-Headers")
    assert {"location", "upload-offset", "upload-length", "tus-resumable", "tus-max-size",
            "upload-expires", "repr-digest", "retry-after", "etag"} <= exposed
    head = requests.head(response.headers["Location"], headers={**TUS, "Origin": PAGE})
    assert "upload-offset" in header_set(head, "Access-Control-Expose-Headers")
