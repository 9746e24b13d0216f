"""The tus conformance flows once more with access control on (`TUS_AUTH=jwt`).

The core tests of test_protocol.py, test_concat.py and test_downloads.py are imported here and
collected again, unchanged, with two differences: `make_server` (and so `server`, `small`,
`concat_server`) starts servers with `auth="jwt"`, and every request the tests send through
`requests` carries alice's bearer token. So both modes stay correct with one set of tests.
A flow that loses the token fails with 401; `test_these_servers_refuse_requests_without_a_token`
proves the token is really needed here. Flows that speak raw sockets are left out (they cannot
carry the token), and so is the listing test (with auth on, its download URLs are signed:
test_auth_links.py checks them); PATCH resume is covered by the explicit flows at the end.
"""
from __future__ import annotations

import http.client
import io
from urllib.parse import urlsplit

import pytest
import requests
from tusclient import client as tus_client

from .helpers import OCTET, TUS, head, patch, upload_id
from .test_auth import SECRET, make_token

# Fixtures the imported flows use (imported so pytest finds them in this module).
from .test_concat import concat_server, joined  # noqa: F401
from .test_downloads import four_chunks, small  # noqa: F401

# The flows themselves: collected again in this module, with the fixtures below.
from .test_protocol import (  # noqa: F401
    test_creation_with_upload_stores_body_and_returns_offset,
    test_deferred_length_is_set_once,
    test_delete_removes_every_object_and_later_requests_404,
    test_every_tus_response_carries_tus_resumable,
    test_head_reports_offset_length_metadata_and_no_store,
    test_patch_returns_204_with_new_offset,
    test_patch_with_chunked_transfer_encoding,
    test_patch_with_wrong_offset_is_409_and_changes_nothing,
    test_patches_of_any_size_give_server_chunk_boundaries,
    test_post_creates_upload_with_absolute_location,
    test_x_http_method_override_is_the_method,
    test_zero_length_upload_is_complete_at_once,
)
from .test_concat import (  # noqa: F401
    test_final_download_is_the_partials_in_order,
    test_final_naming_an_unknown_upload_is_400,
    test_partial_creation_head_says_partial,
    test_patch_on_final_is_403_and_changes_nothing,
    test_terminating_a_final_leaves_partials_and_other_finals,
)
from .test_downloads import (  # noqa: F401
    test_get_returns_the_uploaded_bytes_with_their_digest,
    test_if_none_match_with_the_etag_is_304,
    test_range_is_206_with_exactly_those_bytes,
    test_unfinished_upload_is_409_with_offset_and_length,
    test_unknown_upload_is_404,
)

TOKEN = make_token("alice", "upload download", ttl=3600)


@pytest.fixture
def make_server(make_server):
    """conftest's `make_server`, with access control on unless a test says otherwise."""
    def start(**overrides):
        overrides.setdefault("auth", "jwt")
        overrides.setdefault("jwt_secret", SECRET)
        return make_server(**overrides)

    return start


@pytest.fixture(autouse=True)
def alice_token_on_every_request(monkeypatch):
    """What a client configured with a token does (tuspy `headers=`, curl `-H`): every request
    `requests` sends carries `Authorization: Bearer <alice's token>` unless it names its own."""
    original = requests.Session.request

    def request(self, method, url, headers=None, **kwargs):
        headers = dict(headers or {})
        if not any(name.lower() == "authorization" for name in headers):
            headers["Authorization"] = f"Bearer {TOKEN}"
        return original(self, method, url, headers=headers, **kwargs)

    monkeypatch.setattr(requests.Session, "request", request)


def test_these_servers_refuse_requests_without_a_token(server):
    parts = urlsplit(server.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    connection.request("POST", "/files/", headers={**TUS, "Upload-Length": "5"})
    response = connection.getresponse()
    assert response.status == 401
    assert response.getheader("WWW-Authenticate") == 'Bearer realm="tus-minio"'
    connection.close()


def test_patch_resumes_from_the_offset_head_reports(server):
    response = requests.post(server.files_url(), headers={**TUS, "Upload-Length": "10"})
    assert response.status_code == 201
    url = response.headers["Location"]
    assert patch(url, 0, b"01234").headers["Upload-Offset"] == "5"
    offset = int(head(url).headers["Upload-Offset"])
    assert offset == 5
    assert patch(url, offset, b"56789").headers["Upload-Offset"] == "10"
    assert requests.get(url).content == b"0123456789"
    assert server.store.get(upload_id(url)).owner == "alice"


def test_tuspy_with_a_token_in_headers_uploads_and_resumes(make_server):
    server = make_server(chunk_size=64 * 1024)
    data = bytes(range(256)) * 1024  # 256 KiB
    tus = tus_client.TusClient(server.files_url(), headers={"Authorization": f"Bearer {TOKEN}"})
    uploader = tus.uploader(file_stream=io.BytesIO(data), chunk_size=100_000,
                            metadata={"filename": "tuspy.bin"})
    uploader.upload_chunk()  # one chunk, then a new client resumes from the server's offset
    url = uploader.url
    resumed = tus.uploader(file_stream=io.BytesIO(data), chunk_size=100_000, url=url)
    assert resumed.offset == 100_000
    resumed.upload()
    downloaded = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"})
    assert downloaded.content == data
    bob = {"Authorization": "Bearer " + make_token("bob")}
    assert requests.head(url, headers={**TUS, **bob}).status_code == 404
    assert requests.patch(url, headers={**TUS, **OCTET, "Upload-Offset": str(len(data)),
                                        **bob}).status_code == 404
