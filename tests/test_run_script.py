"""`make run` (scripts/run.sh): quiet while MinIO starts, one banner, Ctrl-C stops everything;
an S3 server already answering (MinIO or another, here SeaweedFS) is used as it is."""
from __future__ import annotations

import http.server
import os
import signal
import subprocess
import threading
import time

import psutil
import pytest
import requests

from .minio_process import ACCESS_KEY, ROOT, SECRET_KEY, free_port, minio_binary


def command_lines(processes: list[psutil.Process]) -> str:
    """The command lines of the processes still running. A short-lived child of the script
    (a probe's curl) may have exited and not yet been reaped: a zombie has no command line."""
    lines = []
    for process in processes:
        try:
            lines.append(" ".join(process.cmdline()))
        except (psutil.ZombieProcess, psutil.NoSuchProcess):
            continue
    return " ".join(lines)


# Ctrl-C in a terminal signals the whole process group; `kill -INT` the script alone.
@pytest.mark.parametrize("to_group", [True, False], ids=["ctrl-c", "script-only"])
def test_run_script_prints_one_banner_and_stops_both_servers_on_ctrl_c(tmp_path, to_group):
    port, minio_port = free_port(), free_port()
    data_dir = tmp_path / "minio-data"
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), MINIO_ENDPOINT=f"127.0.0.1:{minio_port}",
               MINIO_BIN=minio_binary(), MINIO_DATA=str(data_dir), MINIO_LOG=str(tmp_path / "m.log"),
               MINIO_ACCESS_KEY="runscript", MINIO_SECRET_KEY="runscript-secret",
               WORKERS="1", THREADS="4", TUS_CLEANUP_INTERVAL="0")
    proc = subprocess.Popen([str(ROOT / "scripts" / "run.sh")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # so a failing test can still end it all
    out: list[str] = []
    err: list[str] = []
    readers = [threading.Thread(target=lambda s=s, sink=sink: sink.extend(s), daemon=True)
               for s, sink in ((proc.stdout, out), (proc.stderr, err))]
    for reader in readers:
        reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("tus endpoint:" in line for line in out):
            assert proc.poll() is None, "".join(out + err)
            assert time.monotonic() < deadline, "no banner:\n" + "".join(out + err)
            time.sleep(0.1)
        children = psutil.Process(proc.pid).children(recursive=True)
        names = command_lines(children)
        assert "gunicorn" in names and "minio" in names, names

        # The banner is printed only once the app answers.
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 200

        if to_group:
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)  # its trap must stop both servers
        code = proc.wait(timeout=60)
        assert code == 0, "".join(err)  # an asked-for stop is a clean exit, as tusd's
        gone, alive = psutil.wait_procs(children, timeout=30)
        assert alive == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for reader in readers:
        reader.join(timeout=10)

    stdout = "".join(out)
    assert "curl:" not in stdout and "curl:" not in "".join(err)
    assert stdout.count("tus-minio is running") == 1
    assert f"page:          http://127.0.0.1:{port}/\n" in stdout
    assert f"tus endpoint:  http://127.0.0.1:{port}/files/\n" in stdout
    assert f"http://127.0.0.1:{minio_port} (started here; data in {data_dir}" in stdout
    assert "Ctrl-C" in stdout
    assert (data_dir / ".minio.sys").is_dir()  # MinIO really kept its data there
    for candidate in (port, minio_port):
        try:
            requests.get(f"http://127.0.0.1:{candidate}/", timeout=2)
        except requests.ConnectionError:
            continue
        raise AssertionError(f"port {candidate} still answers after Ctrl-C")


def test_run_script_uses_the_s3_server_it_finds_even_if_it_is_not_minio(seaweedfs, tmp_path):
    port = free_port()
    env = dict(os.environ, HOST="127.0.0.1", PORT=str(port), MINIO_ENDPOINT=seaweedfs.endpoint,
               MINIO_BIN="/nonexistent/minio", MINIO_LOG=str(tmp_path / "m.log"),
               MINIO_ACCESS_KEY=ACCESS_KEY, MINIO_SECRET_KEY=SECRET_KEY, TUS_LAYOUT="prefix",
               TUS_BUCKET="tus-run-script", WORKERS="1", THREADS="4", TUS_CLEANUP_INTERVAL="0")
    proc = subprocess.Popen([str(ROOT / "scripts" / "run.sh")], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 90
        while not any("tus endpoint:" in line for line in out):
            assert proc.poll() is None, "".join(out)
            assert time.monotonic() < deadline, "no banner:\n" + "".join(out)
            time.sleep(0.1)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert "minio" not in command_lines(children)
        health = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.json() == {"status": "ok", "conditional_writes": "enforced"}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0  # an asked-for stop is a clean exit
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    reader.join(timeout=10)
    assert (f"  S3:            http://{seaweedfs.endpoint} (already running; its data is "
            "wherever it keeps it)\n") in out


def test_run_script_stops_when_the_address_answers_but_not_as_s3(tmp_path):
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        endpoint = f"127.0.0.1:{web.server_address[1]}"
        env = dict(os.environ, MINIO_ENDPOINT=endpoint, PORT=str(free_port()),
                   MINIO_BIN="/nonexistent/minio", MINIO_LOG=str(tmp_path / "m.log"))
        result = subprocess.run([str(ROOT / "scripts" / "run.sh")], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=60)
    finally:
        web.shutdown()
    assert result.returncode == 1
    assert result.stderr == (f"http://{endpoint} answers, but not as an S3 server; "
                             "set MINIO_ENDPOINT\n")
    assert result.stdout == ""
