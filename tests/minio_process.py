"""Start and stop a real MinIO server on loopback for tests and benchmarks."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parent.parent
ACCESS_KEY = "tusminio"
SECRET_KEY = "tusminio-secret-key"


def tool_binary(name: str, variable: str, make_target: str) -> str:
    """$<variable>, then the project's .tools/bin/<name> (built by make), then PATH."""
    candidates = [os.environ.get(variable), str(ROOT / ".tools" / "bin" / name),
                  shutil.which(name)]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise RuntimeError(f"no {name} binary: run `make {make_target}` (or set {variable})")


def minio_binary() -> str:
    return tool_binary("minio", "MINIO_BIN", "minio")


def stop_group(proc: Optional[subprocess.Popen], sig: int) -> None:
    """Signal the process group `proc` leads; SIGKILL it after 20 s."""
    if proc and proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MinioProcess:
    """One MinIO server process; `drives` > 1 gives an erasure-coded single node."""

    def __init__(self, data_dir: Path, drives: int = 1, port: Optional[int] = None):
        self.data_dir = Path(data_dir)
        self.drives = drives
        self.port = port or free_port()
        self.console_port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.data_dir / "minio.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def drive_paths(self) -> list[Path]:
        if self.drives == 1:
            return [self.data_dir / "drive"]
        return [self.data_dir / f"drive{i}" for i in range(1, self.drives + 1)]

    def drive_args(self) -> list[str]:
        """What `minio server` is given to serve: drive folders (a node of a cluster: the
        endpoints of every node)."""
        return [str(p) for p in self.drive_paths()]

    def env(self) -> dict:
        return dict(os.environ, MINIO_ROOT_USER=ACCESS_KEY, MINIO_ROOT_PASSWORD=SECRET_KEY,
                    MINIO_BROWSER="off", MINIO_UPDATE="off")

    def start(self, timeout: float = 60.0, wait: bool = True) -> "MinioProcess":
        for path in self.drive_paths():
            path.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [minio_binary(), "server", "--quiet", "--address", self.endpoint,
             "--console-address", f"127.0.0.1:{self.console_port}", *self.drive_args()],
            stdout=log, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True)
        log.close()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        url = f"http://{self.endpoint}/minio/health/ready"
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"MinIO exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"MinIO did not become ready in {timeout}s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        stop_group(self.proc, sig)
        self.proc = None
