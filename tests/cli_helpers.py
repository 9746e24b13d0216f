"""Helpers for the CLI tests: run `python -m tus_server.cli` as a subprocess, seed its state."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from tusclient.storage.filestorage import FileStorage

from tus_server.cli.upload import FileFingerprint

from .helpers import create_url, head, metadata, patch
from .minio_process import ROOT

KIB, MIB = 1024, 1024 * 1024


def cli_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["HOME"] = str(tmp_path / "home")  # the default URL store must not be the user's
    env.pop("XDG_CACHE_HOME", None)
    env.pop("TUS_CLI_URL_STORE", None)
    env.pop("TUS_ENDPOINT", None)
    env.pop("TUS_TOKEN", None)
    return env


def cli_args(*args) -> list[str]:
    return [sys.executable, "-m", "tus_server.cli", *map(str, args)]


def run_cli(tmp_path: Path, *args, cwd=None, timeout: float = 120,
            env: Optional[dict] = None) -> subprocess.CompletedProcess:
    """The CLI in a subprocess; `env` adds variables to the clean `cli_env`."""
    return subprocess.run(cli_args(*args), cwd=cwd or tmp_path, env=cli_env(tmp_path) | (env or {}),
                          capture_output=True, text=True, timeout=timeout)


def start_cli(tmp_path: Path, *args, cwd=None) -> subprocess.Popen:
    return subprocess.Popen(cli_args(*args), cwd=cwd or tmp_path, env=cli_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def remember_upload(url_store: Path, endpoint: str, path: Path, url: str) -> None:
    """Put `url` in the CLI's URL store as the unfinished upload of `path`, as a run would."""
    storage = FileStorage(str(url_store))
    with open(path, "rb") as stream:
        storage.set_item(FileFingerprint(endpoint, str(path)).get_fingerprint(stream), url)
    storage.close()


def assert_ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout.strip()


def assert_one_line_failure(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last
    return last


def upload(base_url: str, data: bytes, filename: str = "file.bin") -> str:
    url = create_url(base_url, len(data), metadata(filename=filename))
    if data:
        assert patch(url, 0, data).status_code == 204
    return url


def wait_until(condition, timeout: float = 30.0, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not reached in time")


def stored_urls(url_store: Path) -> list[str]:
    try:
        table = json.loads(url_store.read_text() or "{}").get("_default", {})
    except (OSError, ValueError):
        return []
    return [row["url"] for row in table.values()]


def server_offset(url: str) -> int:
    return int(head(url).headers["Upload-Offset"])


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    proc.stdout.close()
    proc.stderr.close()


def write_part_state(out: Path, url: Optional[str], etag: Optional[str]) -> None:
    """The state a download leaves next to `<out>.part`: which upload (URL, ETag) it belongs to."""
    Path(str(out) + ".part.json").write_text(json.dumps({"url": url, "etag": etag}) + "\n")


def part_state(out: Path) -> dict:
    return json.loads(Path(str(out) + ".part.json").read_text())
