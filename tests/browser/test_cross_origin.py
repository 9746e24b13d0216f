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
const endpoint = new URLSearchParams(location.search).get('endpoint')
window.result = null
document.getElementById('file').addEventListener('change', (event) => {
  const file = event.target.files[0]
  const upload = new tus.Upload(file, {
    endpoint,
    chunkSize: 1048576,
    retryDelays: null,
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


def upload_from(page, origin: str, endpoint: str, payload: dict) -> dict:
    page.goto(f"{origin}/?endpoint={endpoint}")
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
    assert requests.get(server.url + "/files").json()["total"] == 0
