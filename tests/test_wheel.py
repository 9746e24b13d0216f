"""The product issue's Done-when: a built wheel is the whole server, and `tus-minio` its command.

Once per session: a copy of the checkout (so the build leaves nothing in it) is built into an
sdist and, from that sdist, a wheel (`python -m build --no-isolation`, pinned in
requirements-dev.txt), which is installed into a fresh venv with the pinned versions as
constraints (pip's cache makes that quick). Everything installed then runs with the checkout
neither on sys.path nor the working directory: `tus-minio serve` against the session's MinIO,
the page in Chromium, an upload with tuspy, `tus-minio download`, `tus-minio rm`.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.metadata
import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .browser.conftest import CHROMIUM, LAUNCH_ARGS, _no_browser
from .minio_process import ACCESS_KEY, ROOT, SECRET_KEY, free_port

VERBS = ("upload", "download", "ls", "rm", "serve", "token", "link", "hooks", "cleanup")
# Not part of the source to build: environments, tools, data and earlier builds.
NOT_SOURCE = (".git", ".venv", ".tools", "node_modules", "data", "build", "dist", "*.egg-info",
              "__pycache__", ".pytest_cache", ".hypothesis", "bench-results", "vendor")


@dataclass
class Installed:
    wheel: Path
    sdist: Path
    venv: Path
    home: Path  # the working directory of everything run from the venv: not the checkout

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)

    def run(self, *args: str, env: dict | None = None, timeout: float = 60):
        base = {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", "HOME": str(self.home)}
        return subprocess.run([self.bin(args[0]), *args[1:]], cwd=self.home,
                              env={**base, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    (source / "node_modules").symlink_to((ROOT / "node_modules").resolve())  # Uppy, from npm
    out = work / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out),
                            str(source)], cwd=work, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    [wheel], [sdist] = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))

    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
                          "--disable-pip-version-check", "-c", str(ROOT / "requirements.txt"),
                          str(wheel)], cwd=work, capture_output=True, text=True, timeout=600)
    assert pip.returncode == 0, pip.stdout[-3000:] + pip.stderr[-3000:]
    home = work / "home"
    home.mkdir()
    return Installed(wheel=wheel, sdist=sdist, venv=venv, home=home)


# ------------------------------------------------------------------ what the wheel holds
def checkout_packages() -> set[str]:
    return {".".join(init.parent.relative_to(ROOT).parts)
            for init in (ROOT / "tus_server").rglob("__init__.py")}


def test_the_wheel_and_the_sdist_hold_every_package_the_page_and_uppy(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for package in checkout_packages():
        assert f"{package.replace('.', '/')}/__init__.py" in names, package
    modules = {str(p.relative_to(ROOT)) for p in (ROOT / "tus_server").rglob("*.py")}
    assert modules <= names, modules - names
    page = {f"tus_server/web/{p.name}" for p in (ROOT / "tus_server" / "web").iterdir()}
    uppy = {f"tus_server/vendor/uppy/{name}" for name in ("uppy.min.mjs", "uppy.min.css",
                                                          "LICENSE")}
    assert page | uppy <= names, (page | uppy) - names
    bundle = zipfile.ZipFile(installed.wheel).read("tus_server/vendor/uppy/uppy.min.mjs")
    assert bundle == (ROOT / "node_modules" / "uppy" / "dist" / "uppy.min.mjs").read_bytes()
    assert b"MIT License" in zipfile.ZipFile(installed.wheel).read(
        "tus_server/vendor/uppy/LICENSE")

    with tarfile.open(installed.sdist) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        in_sdist = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert {"setup.py", "pyproject.toml"} | modules | page | uppy <= in_sdist
    assert top.startswith("tus_minio-")


def third_party_imports() -> set[str]:
    """Top-level modules the package imports that are neither stdlib nor its own."""
    found = set()
    for path in (ROOT / "tus_server").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"tus_server", "__future__"}


def test_every_import_is_a_declared_dependency_whose_range_holds_the_pin(installed):
    metadata = zipfile.ZipFile(installed.wheel).read(
        next(n for n in zipfile.ZipFile(installed.wheel).namelist()
             if n.endswith(".dist-info/METADATA"))).decode()
    declared = {canonicalize_name(r.name): r for r in
                (Requirement(line.split(":", 1)[1]) for line in metadata.splitlines()
                 if line.startswith("Requires-Dist:"))}
    distributions = importlib.metadata.packages_distributions()
    for module in third_party_imports():
        owners = {canonicalize_name(d) for d in distributions.get(module, ())}
        assert owners & declared.keys(), f"`import {module}` ({owners}) is not a dependency"

    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[canonicalize_name(name)] = version
    for name, requirement in declared.items():
        assert name in pins, f"{name} is a dependency but not pinned in requirements.txt"
        assert requirement.specifier.contains(pins[name]), (requirement, pins[name])


# ------------------------------------------------------------------ the command
def test_one_command_with_every_verb_and_its_help(installed):
    top = installed.run("tus-minio", "--help")
    assert top.returncode == 0, top.stderr
    listed = re.findall(r"^    (\w+)\s", top.stdout, re.MULTILINE)
    assert tuple(listed) == VERBS, top.stdout
    for verb in VERBS:
        result = installed.run("tus-minio", verb, "--help")
        assert result.returncode == 0, (verb, result.stderr)
        assert result.stdout.startswith(f"usage: tus-minio {verb} "), result.stdout
    serve = installed.run("tus-minio", "serve", "--help").stdout
    for name in ("HOST", "PORT", "WORKERS", "THREADS", "MINIO_ENDPOINT", "MINIO_ACCESS_KEY",
                 "MINIO_SECRET_KEY", "TUS_AUTH", "TUS_CHUNK_SIZE"):
        assert re.search(rf"^  {name} ", serve, re.MULTILINE), name

    alias = installed.run("python", "-m", "tus_server", "--help")
    assert alias.returncode == 0 and alias.stdout == top.stdout
    version = installed.run("tus-minio", "--version")
    assert version.stdout.strip() == f"tus-minio {installed.wheel.name.split('-')[1]}"


def test_serve_refuses_an_open_server_on_all_interfaces_in_one_line(installed):
    result = installed.run("tus-minio", "serve", "--host", "0.0.0.0", "--port", "1")
    assert result.returncode == 2
    assert result.stderr.startswith("error: HOST=0.0.0.0 is reachable from other machines")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


# ------------------------------------------------------------------ the installed server
@pytest.fixture
def served(installed, minio):
    port = free_port()
    env = {"PATH": f"{installed.venv / 'bin'}:/usr/bin:/bin", "HOME": str(installed.home),
           "MINIO_ENDPOINT": minio.endpoint, "MINIO_ACCESS_KEY": ACCESS_KEY,
           "MINIO_SECRET_KEY": SECRET_KEY, "PORT": str(port), "WORKERS": "1", "THREADS": "8",
           "TUS_CHUNK_SIZE": str(1024 * 1024), "TUS_CLEANUP_INTERVAL": "0"}
    log = open(installed.home / f"serve-{port}.log", "w+")
    proc = subprocess.Popen([installed.bin("tus-minio"), "serve"], cwd=installed.home, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # a generous bound for a loaded machine
        while True:
            assert proc.poll() is None, _read(log)
            try:
                if requests.get(f"{base}/healthz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or slow to answer
                pass
            assert time.monotonic() < deadline, _read(log)
            time.sleep(0.2)
        yield base, proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # the gunicorn master: serve became it
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        log.close()


def _read(log) -> str:
    log.flush()
    log.seek(0)
    return log.read()[-4000:]


@pytest.mark.browser
def test_the_installed_server_serves_the_page_takes_a_tuspy_upload_and_gives_it_back(
        installed, served, tmp_path):
    base, proc, log = served
    where = installed.run("python", "-c", "import tus_server; print(tus_server.__file__)")
    assert where.stdout.startswith(str(installed.venv)), where.stdout  # not the checkout's

    # The process is gunicorn with the project's config, and the Uppy it serves is the wheel's.
    command = " ".join(psutil.Process(proc.pid).cmdline())
    assert "gunicorn tus_server.wsgi:app" in command
    assert "python:tus_server.ops.gunicorn_conf" in command
    packaged = next(installed.venv.glob("lib/python*/site-packages/tus_server/vendor/uppy"))
    served_bundle = requests.get(f"{base}/vendor/uppy/uppy.min.mjs", timeout=10)
    assert served_bundle.status_code == 200
    assert served_bundle.content == (packaged / "uppy.min.mjs").read_bytes()

    _page_has_uppy(base)

    from tusclient import client

    data = os.urandom(3 * 1024 * 1024 + 12345)  # four chunks, the last one short
    uploader = client.TusClient(f"{base}/files/").uploader(
        file_stream=io.BytesIO(data), chunk_size=1024 * 1024,
        metadata={"filename": "from-the-wheel.bin"})
    uploader.upload()
    url = uploader.url

    target = tmp_path / "back.bin"
    down = installed.run("tus-minio", "download", url, "-o", str(target), "-q")
    assert down.returncode == 0, down.stderr
    assert hashlib.sha256(target.read_bytes()).hexdigest() == hashlib.sha256(data).hexdigest()

    removed = installed.run("tus-minio", "rm", url, "-q")
    assert removed.returncode == 0 and removed.stdout.strip() == url, removed.stderr
    assert requests.head(url, headers={"Tus-Resumable": "1.0.0"}, timeout=10).status_code \
        in (404, 410)
    assert "Traceback" not in _read(log)


def _page_has_uppy(base: str) -> None:
    if not os.access(CHROMIUM, os.X_OK):
        _no_browser(f"no Chromium at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page()
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(f"{base}/")
            page.locator("#uploader .uppy-Dashboard").wait_for(state="visible", timeout=30_000)
            # The dashboard shows before the upload lists load; `window.tusMinio` comes after
            # them, with `data-ready` (the CI failure of 2026-12-03 evaluated it in between).
            page.wait_for_function("document.body.dataset.ready === 'true'", timeout=30_000)
            assert page.evaluate("typeof window.tusMinio.uppy.getPlugin('Tus')") == "object"
        finally:
            browser.close()
    assert errors == []
