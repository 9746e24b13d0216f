"""Playwright fixtures: Debian's Chromium (never a downloaded one), a fresh context per test, and
on failure a screenshot of every open page plus the console log under the test's tmp_path.

Without /usr/bin/chromium the browser tests are skipped, unless TUS_REQUIRE_BROWSER=1, which
turns the missing browser into a failure. `make test` and CI set it (and `make test` installs
Chromium first when it can: scripts/ensure-chromium.sh), so only a bare `pytest` may skip.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest

CHROMIUM = os.environ.get("TUS_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = pytest.StashKey[dict]()


def _no_browser(reason: str):
    if os.environ.get("TUS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{reason} (TUS_REQUIRE_BROWSER=1: a missing browser is a failure)",
                    pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module (and layout); Playwright's driver lives only that long."""
    if not os.access(CHROMIUM, os.X_OK):
        _no_browser(f"no Chromium at {CHROMIUM}: apt-get install chromium to run browser tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - requirements-dev.txt pins playwright
        _no_browser(f"the playwright package is not installed ({exc})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class BrowserLog:
    """Everything the pages of one test said and asked for, for assertions and post-mortems."""
    console: list[str] = field(default_factory=list)
    requests: list = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    # How alert/confirm/prompt are answered (a dialog left open would hang the page).
    accept_dialogs: bool = False
    started: float = field(default_factory=time.monotonic)

    def note(self, line: str) -> None:
        self.console.append(f"{time.monotonic() - self.started:8.3f}s {line}")

    def requests_to(self, method: str, path_part: str) -> list:
        return [r for r in self.requests if r.method == method and path_part in r.url]


def _watch(page, log: BrowserLog) -> None:
    page.on("console", lambda msg: log.note(f"console.{msg.type}: {msg.text}"))
    page.on("pageerror", lambda error: log.note(f"pageerror: {error}"))
    page.on("request", lambda request: log.requests.append(request))
    page.on("requestfailed", lambda request: log.note(
        f"requestfailed: {request.method} {request.url} {request.failure}"))
    page.on("dialog", lambda dialog: _answer(dialog, log))


def _answer(dialog, log: BrowserLog) -> None:
    log.dialogs.append(f"{dialog.type}: {dialog.message}")
    dialog.accept() if log.accept_dialogs else dialog.dismiss()


@pytest.fixture
def browser_log() -> BrowserLog:
    return BrowserLog()


@pytest.fixture
def context(browser, browser_log, tmp_path):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(30_000)
    context.on("page", lambda page: _watch(page, browser_log))
    yield context
    context.close()


@pytest.fixture
def page(context):
    return context.new_page()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call" and report.failed and "context" in item.funcargs:
        paths = _save_artifacts(item)
        if paths:
            text = "\n".join(str(p) for p in paths)
            report.sections.append(("browser artifacts", text))
            print(f"\nbrowser artifacts of {item.nodeid}:\n{text}", file=sys.stderr)
    return report


def _save_artifacts(item) -> list[Path]:
    """Screenshots of the open pages and the console log, while the context is still open."""
    out: Path = item.funcargs["tmp_path"] / "browser-artifacts"
    out.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    context = item.funcargs["context"]
    for index, page in enumerate(context.pages):
        path = out / f"page{index}.png"
        try:
            page.screenshot(path=str(path), full_page=True, timeout=10_000)
            saved.append(path)
        except Exception as exc:  # a crashed page still leaves the console log
            (out / f"page{index}-screenshot-error.txt").write_text(repr(exc))
    log: Optional[BrowserLog] = item.funcargs.get("browser_log")
    if log is not None:
        path = out / "console.log"
        requests = [f"request: {r.method} {r.url}" for r in log.requests]
        path.write_text("\n".join(log.console + ["", *requests, "", *log.dialogs]) + "\n")
        saved.append(path)
    return saved
