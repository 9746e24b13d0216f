"""The upload page (`GET /`: Uppy Dashboard + Tus) driven in real Chromium.

Files are always added through the Dashboard's own `<input type=file>`, as a user would; the
server's side is checked over HTTP (listing, download, HEAD) and against the stored bytes.
"""
from __future__ import annotations

import hashlib
import os
import re
import time
from urllib.parse import urlsplit

import pytest
import requests
from playwright.sync_api import expect

from ..helpers import MIB, TUS, sha256

pytestmark = pytest.mark.browser

FILE_INPUT = "#uploader input.uppy-Dashboard-input[name='files[]']"
UPLOAD_BUTTON = "#uploader .uppy-StatusBar-actionBtn--upload"


def open_page(page, server) -> None:
    page.goto(server.url + "/")
    page.wait_for_selector("body[data-ready='true']")


def add_file(page, file) -> None:
    """`file` is a path or a Playwright payload dict {name, mimeType, buffer}."""
    page.set_input_files(FILE_INPUT, file if isinstance(file, dict) else str(file))


def start_upload(page) -> None:
    page.locator(UPLOAD_BUTTON).click()


def finished_row(page, name: str):
    return page.locator("#finished li.upload").filter(
        has=page.locator(".upload-name", has_text=re.compile("^" + re.escape(name) + "$")))


def listing(server) -> list[dict]:
    response = requests.get(server.url + "/files", params={"per_page": 500})
    assert response.status_code == 200, response.text
    return response.json()["uploads"]


def download_digest(url: str) -> str:
    digest = hashlib.sha256()
    with requests.get(url, stream=True) as response:
        assert response.status_code == 200, response.text
        for block in response.iter_content(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def assert_only_own_origin(browser_log, server) -> None:
    origin = server.url
    for request in browser_log.requests:
        scheme = urlsplit(request.url).scheme
        if scheme in ("data", "blob"):
            continue
        assert request.url.startswith(origin + "/"), f"the page asked another origin: {request.url}"


def assert_no_horizontal_scroll(page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert widths[0] <= widths[1], f"horizontal scroll: content {widths[0]}px in {widths[1]}px"


def assert_clean_console(browser_log) -> None:
    """No script errors and nothing the page's Content-Security-Policy had to block."""
    bad = [line for line in browser_log.console
           if "pageerror" in line or "Content Security Policy" in line]
    assert not bad, bad


def record_transfer_lines(page) -> None:
    """Keep every text the per-file transfer lines showed (they change many times a second)."""
    page.evaluate("""() => {
      window.transferLines = []
      new MutationObserver(() => {
        for (const node of document.querySelectorAll('#transfers .transfer-detail')) {
          window.transferLines.push(node.textContent)
        }
      }).observe(document.getElementById('transfers'),
                 { subtree: true, childList: true, characterData: true })
    }""")


# ---------------------------------------------------------------------------------- uploads
def test_30_mib_file_uploaded_through_the_page_arrives_intact(server, page, browser_log, tmp_path):
    data = os.urandom(30 * MIB)
    path = tmp_path / "holiday video.bin"
    path.write_bytes(data)

    open_page(page, server)
    record_transfer_lines(page)
    add_file(page, path)
    start_upload(page)

    row = finished_row(page, path.name)
    expect(row).to_be_visible(timeout=120_000)
    expect(page.locator("#uploader .uppy-StatusBar")).to_contain_text("Complete")
    expect(page.locator("#transfers .transfer")).to_contain_text("Finished · 30 MiB")
    # While it ran, the file's line showed progress, speed and time left.
    lines = page.evaluate("window.transferLines")
    assert any(re.fullmatch(r"\d+% · [\d.]+ (B|KiB|MiB) of 30 MiB · [\d.]+ (KiB|MiB|GiB)/s · .+ left",
                            line) for line in lines), lines

    [upload] = listing(server)
    assert upload["filename"] == path.name
    assert upload["size"] == upload["offset"] == 30 * MIB and upload["completed"]
    assert download_digest(upload["download_url"]) == sha256(data)

    # The list under the uploader: name, human size, date, a working download link.
    expect(row.locator(".upload-size")).to_have_text("30 MiB")
    assert row.locator("time").get_attribute("datetime") == upload["created"]
    assert row.locator("time").inner_text().strip()
    href = row.get_by_role("link", name="Download").get_attribute("href")
    assert href == upload["download_url"]
    assert download_digest(href) == sha256(data)

    # chunkSize came from /config (5 MiB): six PATCHes, one POST, nothing from elsewhere.
    assert len(browser_log.requests_to("POST", "/files/")) == 1
    assert len(browser_log.requests_to("PATCH", "/files/")) == 6
    assert_only_own_origin(browser_log, server)
    assert_clean_console(browser_log)


def test_interrupted_upload_resumes_in_a_reopened_page_without_resending(make_server, page,
                                                                        browser_log, tmp_path):
    server = make_server(chunk_size=MIB)
    size = 12 * MIB
    data = os.urandom(size)
    path = tmp_path / "resume-me.bin"
    path.write_bytes(data)

    # First attempt: the network dies after four 1 MiB PATCHes reached the server.
    patches = {"passed": 0, "aborted": 0}

    def cut_after_four(route):
        if route.request.method == "PATCH":
            if patches["passed"] >= 4:
                patches["aborted"] += 1
                route.abort("connectionreset")
                return
            patches["passed"] += 1
        route.continue_()

    open_page(page, server)
    page.route(re.compile(r"/files/tus-[0-9a-f]{32}$"), cut_after_four)
    add_file(page, path)
    start_upload(page)
    deadline = time.monotonic() + 30
    while patches["aborted"] == 0 and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert patches["aborted"] > 0, "the upload never reached the cut-off"
    # The tab goes away while its retries are still being cut off, so nothing more arrives.
    page.goto("about:blank")
    page.unroute_all()

    [partial] = listing(server)
    assert not partial["completed"]
    head = requests.head(partial["url"], headers=TUS)
    stored = int(head.headers["Upload-Offset"])
    assert stored == 4 * MIB

    # Second attempt: the page opened again, the same file picked again.
    first_request = len(browser_log.requests)
    open_page(page, server)
    # GoldenRetriever kept the file's state (not its 12 MiB of bytes): the user re-selects it.
    expect(page.locator("#uploader")).to_contain_text("Session restored")
    page.locator("#uploader").get_by_role("button", name="Re-select").click()
    with page.expect_file_chooser() as chooser:
        page.locator("#uploader .uppy-Dashboard-browse").first.click()
    chooser.value.set_files(str(path))
    start_upload(page)
    expect(finished_row(page, path.name)).to_be_visible(timeout=60_000)

    second = browser_log.requests[first_request:]
    assert not [r for r in second if r.method == "POST"], "the page started a new upload"
    patched = [r for r in second if r.method == "PATCH"]
    assert patched and all(r.url == partial["url"] for r in patched)
    assert int(patched[0].headers["upload-offset"]) == stored
    sent = sum(int(r.all_headers()["content-length"]) for r in patched)
    assert sent == size - stored < size

    [done] = listing(server)
    assert done["id"] == partial["id"] and done["completed"]
    assert download_digest(done["download_url"]) == sha256(data)
    # removeFingerprintOnSuccess: nothing left in localStorage to resume.
    assert page.evaluate("Object.keys(localStorage).filter(k => k.startsWith('tus::'))") == []


# ---------------------------------------------------------------------------------- refusals
def test_file_over_the_size_limit_is_refused_in_the_page_before_sending(make_server, page,
                                                                        browser_log):
    server = make_server(max_size=1000)
    open_page(page, server)
    expect(page.locator("#limits")).to_contain_text("Files up to 1000 B")

    add_file(page, {"name": "too-big.bin", "mimeType": "application/octet-stream",
                    "buffer": b"x" * 2000})

    message = page.locator("#messages .msg")
    expect(message).to_have_count(1)
    expect(message).to_contain_text("too-big.bin exceeds maximum allowed size of")
    expect(message).to_contain_text("Nothing was sent.")
    expect(page.locator(UPLOAD_BUTTON)).to_have_count(0)
    page.wait_for_timeout(300)  # a request would be on its way by now
    assert browser_log.requests_to("POST", "/files") == []
    assert browser_log.requests_to("PATCH", "/files") == []
    assert listing(server) == []


def test_file_of_a_refused_type_is_refused_in_the_page_before_sending(make_server, page,
                                                                      browser_log):
    server = make_server(allowed_types=("image/*",))
    open_page(page, server)
    expect(page.locator("#limits")).to_contain_text("only image files")

    add_file(page, {"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"})

    message = page.locator("#messages .msg")
    expect(message).to_have_count(1)
    expect(message).to_contain_text("You can only upload: image/*")
    expect(page.locator(UPLOAD_BUTTON)).to_have_count(0)
    page.wait_for_timeout(300)
    assert browser_log.requests_to("POST", "/files") == []
    assert listing(server) == []

    # The same page still uploads what the server accepts.
    add_file(page, {"name": "pixel.png", "mimeType": "image/png", "buffer": b"\x89PNG fake"})
    start_upload(page)
    expect(finished_row(page, "pixel.png")).to_be_visible()
    assert [u["filetype"] for u in listing(server)] == ["image/png"]


def test_server_refusal_is_shown_with_the_servers_own_words(gunicorn_server, page, browser_log):
    # The page read /config while the server had no size limit; then the operator restarted
    # it with TUS_MAX_SIZE=1000. The page cannot know: only the server can refuse.
    first = gunicorn_server(max_size=0)
    open_page(page, first)
    expect(page.locator("#limits")).to_contain_text("Files of any size")
    first.kill()
    server = gunicorn_server(port=first.port, max_size=1000)

    add_file(page, {"name": "report.pdf", "mimeType": "application/pdf", "buffer": b"%" * 2000})
    start_upload(page)

    message = page.locator("#messages .msg")
    expect(message).to_contain_text(
        "report.pdf: the server refused it (413): Upload-Length 2000 is larger than Tus-Max-Size 1000",
        timeout=15_000)
    # The Dashboard marks the file failed with the same text; a 413 is not retried.
    expect(page.locator("#uploader .uppy-StatusBar")).to_contain_text("Upload failed")
    expect(page.locator("#transfers")).to_be_hidden()
    assert len(browser_log.requests_to("POST", "/files/")) == 1
    assert listing(server) == []


# ---------------------------------------------------------------------------------- the list
def test_delete_button_removes_the_upload_from_the_server(server, page, browser_log):
    open_page(page, server)
    add_file(page, {"name": "old-draft.txt", "mimeType": "text/plain", "buffer": b"draft " * 100})
    start_upload(page)
    row = finished_row(page, "old-draft.txt")
    expect(row).to_be_visible()
    [upload] = listing(server)

    # Saying no to the confirmation keeps it.
    row.get_by_role("button", name="Delete").click()
    assert browser_log.dialogs == ["confirm: Delete “old-draft.txt” from the server?"]
    page.wait_for_timeout(200)
    expect(row).to_be_visible()
    assert requests.head(upload["url"], headers=TUS).status_code == 200

    browser_log.accept_dialogs = True
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    expect(page.locator("#finished-status")).to_have_text("No finished uploads yet.")
    [delete] = browser_log.requests_to("DELETE", "/files/")
    assert delete.url == upload["url"] and delete.headers["tus-resumable"] == "1.0.0"
    assert requests.head(upload["url"], headers=TUS).status_code == 404
    assert listing(server) == []


def test_hostile_filename_is_shown_as_text_not_markup(make_server, page, browser_log):
    server = make_server(allowed_types=("text/plain",))
    name = "<img src=x onerror=alert(1)>.txt"
    open_page(page, server)

    # In a refusal message...
    add_file(page, {"name": "<img src=x onerror=alert(2)>.html", "mimeType": "text/html",
                    "buffer": b"<p>hi</p>"})
    expect(page.locator("#messages .msg-text")).to_have_text(
        "<img src=x onerror=alert(2)>.html: You can only upload: text/plain. Nothing was sent.")
    # ...and in the transfer line and the list of finished uploads.
    add_file(page, {"name": name, "mimeType": "text/plain", "buffer": b"hello"})
    start_upload(page)
    row = finished_row(page, name)
    expect(row).to_be_visible()
    expect(row.locator(".upload-name")).to_have_text(name)
    expect(page.locator("#transfers .transfer-name")).to_have_text(name)

    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], [onerror]').length") == 0
    assert browser_log.dialogs == []
    assert [u["filename"] for u in listing(server)] == [name]


def test_narrow_phone_screen_has_no_horizontal_scroll(server, page, browser_log):
    page.set_viewport_size({"width": 390, "height": 844})
    open_page(page, server)
    assert_no_horizontal_scroll(page)

    name = "quarterly-financial-statement-final-version-approved-by-the-board-" * 2 + ".pdf"
    add_file(page, {"name": name, "mimeType": "application/pdf", "buffer": b"%PDF" * 5000})
    assert_no_horizontal_scroll(page)
    start_upload(page)
    expect(finished_row(page, name)).to_be_visible()
    assert_no_horizontal_scroll(page)
    assert page.locator("h1").inner_text() == "tus-minio"
    assert page.locator("#uploader .uppy-Dashboard").bounding_box()["width"] <= 390
    assert_only_own_origin(browser_log, server)
    assert_clean_console(browser_log)
