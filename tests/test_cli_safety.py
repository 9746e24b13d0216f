"""The CLI never loses or clobbers data: Ctrl-C at any moment, existing files, unit labels."""
from __future__ import annotations

import io
import signal
import subprocess
import sys
import time

import pytest
import requests

from tus_server.cli.common import format_bytes, format_rate
from tus_server.cli.progress import Progress

from .cli_helpers import (KIB, MIB, assert_ok, assert_one_line_failure, cli_env, part_state,
                          run_cli, start_cli, stored_urls, upload, wait_until, write_part_state)
from .helpers import random_bytes, sha256
from .minio_process import ROOT

INTERRUPTED = "interrupted; run the same command again to resume"


def slow_downloads(live, seconds: float = 0.05) -> None:
    real_open = live.store.open

    def slow_open(upload_id_, start, end, info=None):
        for piece in real_open(upload_id_, start, end, info):
            time.sleep(seconds)
            yield piece

    live.store.open = slow_open


def interrupt(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    return stderr


# ------------------------------------------------------------------------------- Ctrl-C
def test_the_package_and_the_cli_do_not_import_the_server():
    """`import tus_server` (run before any tus_server.* module) must not load Flask or minio,
    and `--help` must not load the client libraries either."""
    code = ("import sys, tus_server, tus_server.cli; "
            "print(sorted(m for m in ('flask', 'minio', 'werkzeug', 'requests', 'tusclient', "
            "'tqdm') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    help_run = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "tus_server.cli", "--help"],
        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert help_run.returncode == 0 and "upload" in help_run.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in help_run.stderr.splitlines()}
    assert not imported & {"flask", "minio", "werkzeug", "requests", "tusclient", "tqdm"}


# Each marker is the `-X importtime` line Python prints once that module is imported, so the
# SIGINT lands while the CLI is still starting: in the package's own imports, between the
# package and `main`, and while the download command imports its client libraries.
@pytest.mark.parametrize("marker", ["tus_server", "tus_server.cli.common", "tus_server.cli",
                                    "urllib3", "requests", "tqdm", "tus_server.cli.download"])
def test_ctrl_c_while_the_cli_starts_exits_130_without_a_traceback(server, tmp_path, marker):
    slow_downloads(server)
    url = upload(server.url, random_bytes(2 * MIB), "start.bin")
    proc = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "tus_server.cli",
                             "download", url, "-o", tmp_path / "start.bin"],
                            cwd=tmp_path, env=cli_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.rsplit("|", 1)[-1].strip() == marker:
            proc.send_signal(signal.SIGINT)
            break
    else:
        raise AssertionError(f"{marker} was never imported:\n{''.join(seen)}")
    stdout, rest = proc.communicate(timeout=30)
    stderr = "".join(seen) + rest

    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert stdout == ""
    # Nothing half-written is left that a later run would trip over: it completes.
    del server.store.open  # full speed again
    result = run_cli(tmp_path, "download", url, "-o", tmp_path / "start.bin")
    assert_ok(result)
    assert (tmp_path / "start.bin").stat().st_size == 2 * MIB


def test_ctrl_c_during_an_upload_exits_130_and_the_next_run_resumes(make_server, tmp_path):
    live = make_server(chunk_size=256 * KIB)
    real_write = live.store.write

    def slow_write(*args, **kwargs):
        result = real_write(*args, **kwargs)
        time.sleep(0.05)
        return result

    live.store.write = slow_write
    data = random_bytes(6 * MIB)
    path = tmp_path / "up.bin"
    path.write_bytes(data)
    url_store = tmp_path / "urls.json"
    args = ("upload", path, "--endpoint", live.files_url(), "--chunk-size", "256K",
            "--url-store", url_store)

    proc = start_cli(tmp_path, *args)
    url = wait_until(lambda: (stored_urls(url_store) or [None])[0])
    wait_until(lambda: int(requests.head(url, headers={"Tus-Resumable": "1.0.0"})
                           .headers["Upload-Offset"]) >= 1 * MIB)
    stderr = interrupt(proc)

    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == INTERRUPTED
    assert stored_urls(url_store) == [url]  # the store is intact and still names the upload
    live.store.write = real_write

    result = run_cli(tmp_path, *args)

    assert assert_ok(result) == url
    assert f"resuming {url} at byte" in result.stderr
    assert sha256(requests.get(url).content) == sha256(data)


def test_ctrl_c_stops_a_download_cleanly_and_the_next_run_resumes(make_server, tmp_path):
    live = make_server(chunk_size=256 * KIB)
    data = random_bytes(4 * MIB)
    url = upload(live.url, data, "ctrl-c.bin")
    slow_downloads(live)
    part = tmp_path / "ctrl-c.bin.part"
    proc = start_cli(tmp_path, "download", url)
    wait_until(lambda: part.exists() and part.stat().st_size >= 512 * KIB)
    stderr = interrupt(proc)

    assert proc.returncode == 130
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines()[-1] == INTERRUPTED
    assert part_state(tmp_path / "ctrl-c.bin")["url"] == url
    have = part.stat().st_size
    result = run_cli(tmp_path, "download", url)
    assert_ok(result)
    assert f"resuming at byte {have} of {len(data)}" in result.stderr
    assert sha256((tmp_path / "ctrl-c.bin").read_bytes()) == sha256(data)


# ------------------------------------------------------------------------------- existing files
@pytest.mark.parametrize("named_by", ["-o", "server"])
def test_download_refuses_to_replace_an_existing_file(server, tmp_path, named_by):
    url = upload(server.url, random_bytes(40 * KIB), "mine.txt")
    mine = random_bytes(1000)
    out = tmp_path / "mine.txt"
    out.write_bytes(mine)

    args = ("-o", out) if named_by == "-o" else ()
    result = run_cli(tmp_path, "download", url, *args)

    assert result.returncode == 1
    assert_one_line_failure(result, "mine.txt already exists", "--force")
    assert out.read_bytes() == mine  # byte for byte
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["mine.txt"]


def test_download_with_force_replaces_an_existing_file(server, tmp_path):
    data = random_bytes(40 * KIB)
    url = upload(server.url, data, "mine.txt")
    out = tmp_path / "mine.txt"
    out.write_bytes(b"old contents")

    result = run_cli(tmp_path, "download", url, "-o", out, "--force")

    assert assert_ok(result) == str(out)
    assert sha256(out.read_bytes()) == sha256(data)


def test_a_forced_download_that_fails_leaves_the_existing_file(server, tmp_path):
    out = tmp_path / "keep.txt"
    out.write_bytes(b"keep me")
    url = server.url + "/files/tus-" + "0" * 32
    result = run_cli(tmp_path, "download", url, "-o", out, "--force")
    assert_one_line_failure(result, "404")
    assert out.read_bytes() == b"keep me"


def test_download_resumes_a_partial_of_the_same_upload(make_server, tmp_path):
    live = make_server(chunk_size=64 * KIB)
    data = random_bytes(5 * 64 * KIB + 99)
    url = upload(live.url, data, "same.bin")
    out = tmp_path / "same.bin"
    (tmp_path / "same.bin.part").write_bytes(data[:150 * KIB])
    # The state names the upload by another spelling of its URL: the id is what matters.
    write_part_state(out, url.replace("127.0.0.1", "localhost"), requests.get(url).headers["ETag"])

    result = run_cli(tmp_path, "download", url, "-o", out)

    assert_ok(result)
    assert f"resuming at byte {150 * KIB} of {len(data)}" in result.stderr
    assert sha256(out.read_bytes()) == sha256(data)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "home") == ["same.bin"]


# ------------------------------------------------------------------------------- units
@pytest.mark.parametrize("size,text", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (1536, "1.50 KiB"),
    (10 * 1024 - 1, "10.0 KiB"), (MIB, "1.00 MiB"), (5 * MIB, "5.00 MiB"),
    (int(27.3 * MIB), "27.3 MiB"), (512 * MIB, "512 MiB"),
    (1024 * MIB - 1, "1.00 GiB"),  # never "1024 MiB"
    (3 * 1024 ** 3, "3.00 GiB"), (1024 ** 4, "1.00 TiB"),
    (1_000_000, "977 KiB"),  # 10**6 bytes is not 1 MiB
])
def test_sizes_are_binary_and_labelled_so(size, text):
    assert format_bytes(size) == text


def test_speeds_count_mebibytes_per_second():
    assert format_rate(MIB) == "1.00 MiB/s"
    assert format_rate(12.5 * MIB) == "12.5 MiB/s"
    assert format_rate(10 ** 6) == "977 KiB/s"
    assert format_rate(None) == "? B/s"


def test_the_progress_bar_labels_what_it_counts():
    buffer = io.StringIO()
    bar = Progress(10 * MIB, MIB, "file.bin", quiet=False, file=buffer)
    bar.start_t -= 2.0  # as if the 2 MiB below took 2 seconds
    bar.last_print_t -= 2.0
    bar.update(2 * MIB)
    text = str(bar)
    bar.close()
    assert "3.00 MiB / 10.0 MiB" in text
    speed = text.rsplit(", ", 1)[1].rstrip("]")
    assert speed.endswith(" MiB/s") and 0.9 <= float(speed.split()[0]) <= 1.01, text
    assert "MB" not in buffer.getvalue() and "kB" not in buffer.getvalue()
