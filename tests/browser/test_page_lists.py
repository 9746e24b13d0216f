"""The page's lists in Chromium: unfinished uploads (from any device, updating while they move,
Resume and Delete), one progress display per upload, finished files with their SHA-256 and a
copy-link button, errors that say what to do, and a phone-width layout."""
from __future__ import annotations

import os
import time

import pytest
import requests
from playwright.sync_api import expect

from ..helpers import MIB, create_url, metadata, patch, sha256
from .test_page import (add_file, assert_clean_console, finished_row, listing, open_page,
                        start_upload)

pytestmark = pytest.mark.browser


def unfinished_row(page, name: str):
    return page.locator("#unfinished li").filter(has_text=name)


def bar(row) -> list:
    return row.locator("progress").evaluate("p => [p.value, p.max]")


def test_unfinished_upload_from_another_device_is_listed_and_moves(server, page, browser_log):
    data = os.urandom(10 * MIB)
    url = create_url(server.url, len(data), metadata(filename="from-the-laptop.bin"))
    assert patch(url, 0, data[:2 * MIB]).status_code == 204

    open_page(page, server)
    row = unfinished_row(page, "from-the-laptop.bin")
    expect(row).to_have_count(1)
    expect(row.locator(".upload-meta")).to_contain_text("20% · 2 MiB of 10 MiB stored · kept until")
    assert bar(row) == [2 * MIB, 10 * MIB]
    expect(row.get_by_role("button", name="Resume")).to_be_visible()
    expect(page.locator("#finished-status")).to_have_text("No finished uploads yet.")

    # The other device sends more: the bar follows without a reload.
    assert patch(url, 2 * MIB, data[2 * MIB:5 * MIB]).status_code == 204
    expect(row.locator(".upload-meta")).to_contain_text("50% · 5 MiB of 10 MiB stored",
                                                         timeout=10_000)
    assert bar(row) == [5 * MIB, 10 * MIB]

    # ...and finishes: the upload moves to the finished list, with the server's SHA-256.
    assert patch(url, 5 * MIB, data[5 * MIB:]).status_code == 204
    done = finished_row(page, "from-the-laptop.bin")
    expect(done).to_be_visible(timeout=10_000)
    expect(unfinished_row(page, "from-the-laptop.bin")).to_have_count(0)
    expect(done.locator("code.sha256")).to_have_text(sha256(data), timeout=20_000)
    assert_clean_console(browser_log)


def test_unfinished_upload_can_be_deleted(server, page, browser_log):
    url = create_url(server.url, 1000, metadata(filename="abandoned.bin"))
    assert patch(url, 0, b"a" * 100).status_code == 204
    open_page(page, server)
    row = unfinished_row(page, "abandoned.bin")
    expect(row).to_have_count(1)
    browser_log.accept_dialogs = True
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    expect(page.locator("#unfinished-status")).to_have_text("No unfinished uploads.")
    assert listing(server) == []


def test_one_progress_display_per_upload(make_server, page, browser_log):
    server = make_server(chunk_size=MIB)
    open_page(page, server)
    add_file(page, {"name": "paused.bin", "mimeType": "application/octet-stream",
                    "buffer": os.urandom(8 * MIB)})
    # Pause at the first progress event, so the upload stays in flight for the checks.
    page.evaluate("""() => {
      const uppy = window.tusMinio.uppy
      uppy.once('upload-progress', () => uppy.pauseAll())
    }""")
    start_upload(page)
    row = unfinished_row(page, "paused.bin")
    expect(row).to_have_count(1)
    expect(row).to_have_attribute("data-kind", "here")
    # Past a poll of the server's list, which now has this upload too: still one row, one bar.
    page.wait_for_timeout(2600)
    [upload] = listing(server)
    assert not upload["completed"]
    expect(page.locator("#unfinished li")).to_have_count(1)
    assert page.evaluate("document.querySelectorAll('progress, [role=progressbar]').length") == 1
    assert page.locator("#uploader .uppy-StatusBar").count() == 0
    for node in page.locator("#uploader .uppy-Dashboard-Item-progress").all():
        assert not node.is_visible()
    # Units: binary and labelled, as in the CLI.
    assert " of 8 MiB" in row.locator(".upload-meta").inner_text()

    page.evaluate("window.tusMinio.uppy.resumeAll()")
    expect(finished_row(page, "paused.bin")).to_be_visible(timeout=30_000)
    expect(page.locator("#unfinished li")).to_have_count(0)
    assert len(browser_log.requests_to("POST", "/files")) == 1


def test_finished_file_shows_digest_date_and_copies_its_link(server, page, context):
    data = b"copy me\n" * 1000
    url = create_url(server.url, len(data), metadata(filename="link.txt", filetype="text/plain"))
    assert patch(url, 0, data).status_code == 204
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    open_page(page, server)
    row = finished_row(page, "link.txt")
    expect(row.locator("code.sha256")).to_have_text(sha256(data), timeout=20_000)
    expect(row.locator(".upload-size")).to_have_text("7.8 KiB")
    [upload] = listing(server)
    # The date is the user's locale rendering of the server's time.
    expected = page.evaluate("iso => new Date(iso).toLocaleString()", upload["created"])
    expect(row.locator("time")).to_have_text(expected)
    row.get_by_role("button", name="Copy link").click()
    expect(row.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == upload["download_url"]


def test_expired_upload_says_it_expired(make_server, page):
    server = make_server(expiration=1)
    url = create_url(server.url, 1000, metadata(filename="too-late.bin"))
    assert patch(url, 0, b"l" * 10).status_code == 204
    time.sleep(1.2)
    open_page(page, server)
    row = unfinished_row(page, "too-late.bin")
    expect(row.locator(".upload-meta")).to_contain_text("1% · 10 B of 1000 B stored · expired")
    expect(row.get_by_role("button", name="Resume")).to_have_count(0)
    expect(row).to_have_attribute("data-kind", "expired")


def test_storage_outage_in_the_list_says_retrying(server, page):
    url = create_url(server.url, 10, metadata(filename="later.bin"))
    page.route("**/files?page=*", lambda route: route.fulfill(
        status=503, body="storage unavailable, retry later\n", headers={"Retry-After": "1"}))
    open_page(page, server)
    expect(page.locator("#finished-status")).to_have_text("Storage unavailable, retrying…")
    page.unroute("**/files?page=*")
    # The page retries by itself and shows the list once storage is back.
    expect(unfinished_row(page, "later.bin")).to_have_count(1, timeout=10_000)
    assert url.endswith(listing(server)[0]["id"])


def test_phone_width_has_no_horizontal_scroll_with_both_lists(server, page, browser_log):
    long = "minutes-of-the-annual-general-meeting-of-the-board-of-directors-" * 2
    url = create_url(server.url, 5 * MIB, metadata(filename=long + "unfinished.pdf"))
    assert patch(url, 0, b"u" * MIB).status_code == 204
    done = create_url(server.url, 100, metadata(filename=long + "finished.pdf"))
    assert patch(done, 0, b"f" * 100).status_code == 204

    page.set_viewport_size({"width": 390, "height": 844})
    open_page(page, server)
    expect(unfinished_row(page, "unfinished.pdf")).to_have_count(1)
    row = finished_row(page, long + "finished.pdf")
    expect(row.locator("code.sha256")).to_have_text(sha256(b"f" * 100), timeout=20_000)
    add_file(page, {"name": long + "new.pdf", "mimeType": "application/pdf",
                    "buffer": b"%PDF" * 10})
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    for button in ("Resume", "Delete"):
        found = unfinished_row(page, "unfinished.pdf").get_by_role("button", name=button)
        box = found.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390
    start_upload(page)
    expect(finished_row(page, long + "new.pdf")).to_be_visible()
    assert page.evaluate("document.scrollingElement.scrollWidth") <= 390
    assert_clean_console(browser_log)


def test_storage_outage_during_an_upload_says_retrying_and_recovers(make_server, page,
                                                                    browser_log):
    server = make_server(chunk_size=MIB)
    data = os.urandom(3 * MIB)
    refused = {"count": 0}

    def outage_on_second_patch(route):
        patches = len(browser_log.requests_to("PATCH", "/files/"))
        if route.request.method == "PATCH" and patches >= 2 and refused["count"] < 2:
            refused["count"] += 1
            route.fulfill(status=503, body="storage unavailable, retry later\n",
                          headers={"Retry-After": "1", "Tus-Resumable": "1.0.0"})
            return
        route.continue_()

    open_page(page, server)
    page.evaluate("""() => {
      window.rowTexts = []
      new MutationObserver(() => {
        for (const node of document.querySelectorAll('#unfinished .upload-meta')) {
          window.rowTexts.push(node.textContent)
        }
      }).observe(document.getElementById('unfinished'),
                 { subtree: true, childList: true, characterData: true })
    }""")
    page.route("**/files/tus-*", outage_on_second_patch)
    add_file(page, {"name": "outage.bin", "mimeType": "application/octet-stream",
                    "buffer": data})
    start_upload(page)
    expect(finished_row(page, "outage.bin")).to_be_visible(timeout=30_000)
    assert refused["count"] == 2
    texts = page.evaluate("window.rowTexts")
    assert any(text.endswith("· storage unavailable, retrying") for text in texts), texts
    # Exactly one upload of this file: the refused PATCHes were resumed, never a new creation.
    [upload] = [u for u in listing(server) if u["filename"] == "outage.bin"]
    assert upload["completed"]
    assert upload["sha256"] in (None, sha256(data))
    assert sha256(requests.get(upload["download_url"]).content) == sha256(data)
