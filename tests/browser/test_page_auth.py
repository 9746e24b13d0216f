"""The upload page with access control on (`TUS_AUTH=jwt`), driven in real Chromium: a token is
pasted (or handed over in `#token=`), uploads carry it, the list shows only the user's own files,
and downloads go through the signed link the listing gives (a link cannot send a header)."""
from __future__ import annotations

import os
import re

import pytest
import requests
from playwright.sync_api import expect

from ..helpers import MIB, OCTET, TUS, metadata
from ..test_auth import SECRET, make_token
from .test_page import add_file, assert_clean_console, finished_row, open_page, start_upload

pytestmark = pytest.mark.browser


@pytest.fixture
def auth_server(make_server):
    server = make_server(auth="jwt", jwt_secret=SECRET, chunk_size=MIB)
    # bob's finished file, which alice must never see.
    bob = {"Authorization": "Bearer " + make_token("bob")}
    created = requests.post(server.files_url(), headers={
        **TUS, **bob, "Upload-Length": "3", "Upload-Metadata": metadata(filename="bobs-secret.txt")})
    assert created.status_code == 201
    done = requests.patch(created.headers["Location"], data=b"bob",
                          headers={**TUS, **OCTET, **bob, "Upload-Offset": "0"})
    assert done.status_code == 204
    return server


def test_pasted_token_uploads_lists_own_files_and_downloads_by_signed_link(auth_server, page,
                                                                           browser_log, tmp_path):
    token = make_token("alice", ttl=3600)
    data = os.urandom(3 * MIB + 5)
    path = tmp_path / "alices-report.bin"
    path.write_bytes(data)

    open_page(page, auth_server)
    expect(page.locator("#token-card")).to_be_visible()
    expect(page.locator("#finished-status")).to_contain_text("missing or was refused (401")
    page.fill("#token", token)
    page.locator("#token-form button[type=submit]").click()
    expect(page.locator("#token-status")).to_contain_text("A token is set")
    expect(page.locator("#finished-status")).to_have_text("No finished uploads yet.")

    add_file(page, path)
    start_upload(page)
    row = finished_row(page, path.name)
    expect(row).to_be_visible(timeout=60_000)
    expect(page.locator("#finished li.upload")).to_have_count(1)  # not bob's
    tus_requests = [r for r in browser_log.requests
                    if r.method in ("POST", "PATCH") and "/files" in r.url]
    assert tus_requests and all(r.headers.get("authorization") == f"Bearer {token}"
                                for r in tus_requests)

    link = row.locator("a", has_text="Download")
    href = link.get_attribute("href")
    assert re.search(r"/files/tus-[0-9a-f]{32}\?exp=\d+&sig=[\w-]+$", href), href
    with page.expect_download() as download:
        link.click()
    assert open(download.value.path(), "rb").read() == data
    plain = requests.get(href)  # the link works without a token, for this one file
    assert plain.status_code == 200 and plain.content == data

    # A reload keeps the token for this tab: still alice's file, still not bob's.
    page.reload()
    page.wait_for_selector("body[data-ready='true']")
    expect(finished_row(page, path.name)).to_be_visible()
    expect(page.locator("#finished")).not_to_contain_text("bobs-secret.txt")
    assert_clean_console(browser_log)


def test_token_from_the_url_is_taken_and_a_refusal_is_shown_not_retried(auth_server, page,
                                                                        browser_log):
    expired = make_token("alice", ttl=-3600)
    page.goto(auth_server.url + "/#token=" + expired)
    page.wait_for_selector("body[data-ready='true']")
    assert "token" not in page.url  # removed from the address bar
    expect(page.locator("#token-offer")).to_contain_text("“alice”")
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#token-status")).to_contain_text("A token is set for this tab, as “alice”")
    expect(page.locator("#finished-status")).to_contain_text("the token has expired")

    add_file(page, {"name": "note.txt", "mimeType": "text/plain", "buffer": b"hello"})
    start_upload(page)
    expect(page.locator("#messages")).to_contain_text("missing or was refused (401")
    page.wait_for_timeout(2500)  # Uppy's first retries come within a second
    posts = browser_log.requests_to("POST", "/files")
    assert len(posts) == 1, [r.url for r in posts]
    # The list is not polled with a refused token either (it would be every 2 s otherwise).
    lists = len(browser_log.requests_to("GET", "/files?"))
    page.wait_for_timeout(2500)
    assert len(browser_log.requests_to("GET", "/files?")) == lists
    assert requests.get(auth_server.files_url(), headers={
        "Authorization": "Bearer " + make_token("root", "admin")}, params={"page": 1}).json()["total"] == 1  # bob's


def test_interrupted_upload_resumes_after_reopening_with_the_token_of_the_tab(auth_server, page,
                                                                              browser_log,
                                                                              tmp_path):
    token = make_token("alice", ttl=3600)
    admin = {"Authorization": "Bearer " + make_token("root", "admin")}
    data = os.urandom(6 * MIB)
    path = tmp_path / "resume-me.bin"
    path.write_bytes(data)
    patches = {"passed": 0, "aborted": 0}

    def cut_after_two(route):
        if route.request.method == "PATCH":
            if patches["passed"] >= 2:
                patches["aborted"] += 1
                route.abort("connectionreset")
                return
            patches["passed"] += 1
        route.continue_()

    page.goto(auth_server.url + "/#token=" + token)
    page.wait_for_selector("body[data-ready='true']")
    page.get_by_role("button", name="Use this token").click()
    expect(page.locator("#token-status")).to_contain_text("as “alice”")
    page.route(re.compile(r"/files/tus-[0-9a-f]{32}$"), cut_after_two)
    add_file(page, path)
    start_upload(page)
    for _ in range(600):
        if patches["aborted"]:
            break
        page.wait_for_timeout(50)
    assert patches["aborted"], "the upload never reached the cut-off"
    page.goto("about:blank")
    page.unroute_all()

    mine = [u for u in requests.get(auth_server.files_url(), headers=admin).json()["uploads"]
            if u["filename"] == path.name]
    [partial] = mine
    stored = int(requests.head(partial["url"], headers={**TUS, **admin}).headers["Upload-Offset"])
    assert stored == 2 * MIB

    # Same tab, reopened without `#token=`: the token is still in sessionStorage, so the
    # unfinished list (alice's own) shows the upload, and Resume continues it with that token.
    first_request = len(browser_log.requests)
    open_page(page, auth_server)
    expect(page.locator("#token-status")).to_contain_text("A token is set")
    row = page.locator("#unfinished li").filter(has_text=path.name)
    expect(row.locator(".upload-meta")).to_contain_text("2 MiB of 6 MiB stored")
    expect(page.locator("#unfinished li")).to_have_count(1)  # bob's file is not there either
    with page.expect_file_chooser() as chooser:
        row.get_by_role("button", name="Resume").click()
    chooser.value.set_files(str(path))
    expect(finished_row(page, path.name)).to_be_visible(timeout=60_000)

    second = browser_log.requests[first_request:]
    assert not [r for r in second if r.method == "POST"], "the page started a new upload"
    api = [r for r in second if "/files" in r.url and r.method in ("GET", "HEAD", "PATCH")]
    assert all(r.headers.get("authorization") == f"Bearer {token}" for r in api)
    patched = [r for r in second if r.method == "PATCH"]
    assert patched and all(r.url == partial["url"] for r in patched)
    assert all(r.headers.get("authorization") == f"Bearer {token}" for r in patched)
    assert int(patched[0].headers["upload-offset"]) == stored
    assert requests.get(partial["url"], headers=admin).content == data


def test_token_planted_in_a_link_is_not_used_until_the_user_says_so(auth_server, page,
                                                                    browser_log):
    """Login CSRF: `/#token=<mallory's token>` must not make the page upload into mallory's
    account. The page names the token's owner and asks; Ignore keeps the user's own token."""
    alice, mallory = make_token("alice", ttl=3600), make_token("mallory", ttl=3600)
    # A tab opened by the link alone: no token is used until the user accepts this one.
    page.goto(auth_server.url + "/#token=" + mallory)
    page.wait_for_selector("body[data-ready='true']")
    assert "token" not in page.url
    assert page.evaluate("sessionStorage.getItem('tus-minio-token')") is None
    assert not [r for r in browser_log.requests if r.headers.get("authorization")]
    expect(page.locator("#token-status")).to_contain_text("needs an access token")
    expect(page.locator("#token-offer")).to_contain_text("“mallory”")

    # The user's own token, then the planted link again (a new load of the page, same tab).
    page.fill("#token", alice)
    page.locator("#token-form button[type=submit]").click()
    expect(page.locator("#token-status")).to_contain_text("as “alice”")
    first_request = len(browser_log.requests)
    page.goto("about:blank")
    page.goto(auth_server.url + "/#token=" + mallory)
    page.wait_for_selector("body[data-ready='true']")
    offer = page.locator("#token-offer")
    expect(offer).to_be_visible()
    expect(offer).to_contain_text("“mallory”")
    expect(page.locator("#token-status")).to_contain_text("as “alice”")  # not switched
    page.get_by_role("button", name="Ignore").click()
    expect(offer).to_be_hidden()

    add_file(page, {"name": "mine.txt", "mimeType": "text/plain", "buffer": b"alice's"})
    start_upload(page)
    expect(finished_row(page, "mine.txt")).to_be_visible(timeout=30_000)
    sent = [r for r in browser_log.requests[first_request:] if "/files" in r.url]
    assert sent and all(r.headers.get("authorization") == f"Bearer {alice}" for r in sent), \
        [(r.method, r.url, r.headers.get("authorization", "")[:20]) for r in sent]
    mallorys = requests.get(auth_server.files_url(), headers={"Authorization": "Bearer " + mallory})
    assert mallorys.status_code == 200 and mallorys.json()["uploads"] == []
    assert_clean_console(browser_log)
