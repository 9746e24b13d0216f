"""A page on another origin (another port of 127.0.0.1) uploads to the server with tus-js-client:
allowed by TUS_CORS_ORIGINS it works and can read headers and error text; not allowed, the
browser stops it at the preflight and nothing is created."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests
from werkzeug.wrappers import Request, Response

from ..helpers import MIB, ThreadedServer, sha256
from ..minio_process import ROOT

pytestmark = pytest.mark.browser

TUS_JS = Path(ROOT) / "node_modules" / "tus-js-client" / "dist" / "tus.min.js"

PAGE = """<!doctype html>
<meta charset="utf-8">
<title>another site</title>
<input type="file" id="file">
<script src="/tus.min.js"></script>
<script>
const params = new URLSearchParams(location.search)
const endpoint = params.get('endpoint')
const extra = params.get('header')  // "Name: value", sent on every tus request
window.result = null
document.getElementById('file').addEventListener('change', (event) => {
  const file = event.target.files[0]
  const upload = new tus.Upload(file, {
    endpoint,
    chunkSize: 1048576,
    retryDelays: null,
    addRequestId: params.get('requestId') === '1',
    headers: extra ? { [extra.split(':')[0]]: extra.split(':').slice(1).join(':').trim() } : {},
    metadata: { filename: file.name, filetype: file.type },
    async onSuccess () {
      const head = await fetch(upload.url, { method: 'HEAD', headers: { 'Tus-Resumable': '1.0.0' } })
      window.result = { ok: true, url: upload.url, offset: head.headers.get('Upload-Offset') }
    },
    onError (err) {
      const response = err.originalResponse
      window.result = { ok: false, status: response ? response.getStatus() : null,
                        body: response ? response.getBody() : null, message: String(err) }
    },
  })
  upload.start()
})
</script>
"""


@pytest.fixture
def other_origin():
    """A second web server on its own port: a different origin from the tus server."""
    if not TUS_JS.exists():
        pytest.fail(f"{TUS_JS} is missing: run npm ci (tus-js-client is a devDependency)")

    @Request.application
    def app(request: Request) -> Response:
        if request.path == "/tus.min.js":
            return Response(TUS_JS.read_bytes(), mimetype="text/javascript")
        return Response(PAGE, mimetype="text/html")

    served = ThreadedServer(app)
    yield served.url
    served.stop()


def upload_from(page, origin: str, endpoint: str, payload: dict, query: str = "") -> dict:
    page.goto(f"{origin}/?endpoint={endpoint}{query}")
    page.set_input_files("#file", payload)
    page.wait_for_function("window.result !== null", timeout=30_000)
    return page.evaluate("window.result")


def test_page_on_an_allowed_origin_uploads_and_reads_headers_and_errors(make_server, other_origin,
                                                                        page, browser_log):
    server = make_server(cors_origins=(other_origin,), max_size=4 * MIB)
    data = os.urandom(3 * MIB + 123)

    result = upload_from(page, other_origin, server.files_url(),
                         {"name": "from-elsewhere.bin", "mimeType": "application/octet-stream",
                          "buffer": data})
    # `url` came from Location and `offset` from a HEAD: both headers were readable.
    assert result["ok"], result
    assert result["url"].startswith(server.files_url())
    assert result["offset"] == str(len(data))
    assert sha256(requests.get(result["url"]).content) == sha256(data)
    assert len(browser_log.requests_to("PATCH", server.url)) == 4

    # A refusal's status and text reach the other origin's script too.
    refused = upload_from(page, other_origin, server.files_url(),
                          {"name": "huge.bin", "mimeType": "application/octet-stream",
                           "buffer": b"x" * (4 * MIB + 1)})
    assert not refused["ok"]
    assert refused["status"] == 413
    assert "larger than Tus-Max-Size 4194304" in refused["body"]


def test_page_on_an_origin_not_allowed_is_stopped_before_anything_is_created(
        make_server, other_origin, page, browser_log):
    server = make_server(cors_origins=("http://127.0.0.1:1",))
    result = upload_from(page, other_origin, server.files_url(),
                         {"name": "blocked.bin", "mimeType": "application/octet-stream",
                          "buffer": b"y" * 1000})
    assert not result["ok"]
    assert not result["status"], result  # the browser hid whatever came back
    assert any("CORS policy" in line for line in browser_log.console), browser_log.console
    assert requests.get(server.url + "/files").json()["uploads"] == []


def test_cross_origin_upload_with_request_id_and_a_configured_header(make_server, other_origin,
                                                                     page, browser_log):
    """tus-js-client's `addRequestId` (X-Request-ID, on tusd's list) and a page's own header
    (allowed by TUS_CORS_ALLOW_HEADERS) pass the preflight, and the upload completes."""
    server = make_server(cors_origins=(other_origin,), cors_allow_headers=("X-Tenant",))
    data = os.urandom(MIB + 17)
    result = upload_from(page, other_origin, server.files_url(),
                         {"name": "with-headers.bin", "mimeType": "application/octet-stream",
                          "buffer": data}, "&requestId=1&header=X-Tenant:%20blue")
    assert result["ok"], (result, browser_log.console)
    assert sha256(requests.get(result["url"]).content) == sha256(data)
    patches = browser_log.requests_to("PATCH", server.url)
    assert len(patches) == 2
    for request in patches:
        headers = request.headers
        assert headers.get("x-tenant") == "blue"
        assert headers.get("x-request-id")
    preflights = browser_log.requests_to("OPTIONS", server.url)
    assert not [line for line in browser_log.console if "CORS policy" in line]
    assert preflights or patches  # Chromium does not always report preflights as requests


def test_a_header_nobody_allowed_is_blocked_at_the_preflight(make_server, other_origin, page,
                                                             browser_log):
    server = make_server(cors_origins=(other_origin,))
    result = upload_from(page, other_origin, server.files_url(),
                         {"name": "blocked-header.bin", "mimeType": "application/octet-stream",
                          "buffer": b"z" * 100}, "&header=X-Tenant:%20blue")
    assert not result["ok"]
    assert not result["status"], result
    assert any("CORS policy" in line and "x-tenant" in line.lower()
               for line in browser_log.console), browser_log.console
    assert requests.get(server.url + "/files").json()["uploads"] == []
