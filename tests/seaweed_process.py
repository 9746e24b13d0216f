"""Start and stop a real SeaweedFS (`weed server -filer -s3`, one process) on loopback.

The second S3 server of the suite (issue 21): master, volume server, filer and S3 gateway in
one process, every port on 127.0.0.1, telemetry off, one S3 identity with the suite's keys.
"""
from __future__ import annotations

import io
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

import urllib3
from minio import Minio
from minio.error import MinioException

from .minio_process import ACCESS_KEY, SECRET_KEY, free_port, stop_group, tool_binary

# Where readiness is proven by a PUT: the app's system bucket, which the tests share anyway
# (every bucket is a SeaweedFS collection with volumes of its own: no need for another).
READY_BUCKET = "tusminio-system"


def weed_binary() -> str:
    return tool_binary("weed", "WEED_BIN", "test")


class SeaweedProcess:
    """One `weed server`; `stop` and `start` again keep its data and ports (fault tests)."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)
        self.port = free_port()
        # Every listener gets a port of its own: the defaults (9333, 8080, 8888, port+10000 for
        # gRPC, 8181 and 9101 for Iceberg and Lance) may be taken by anything on the machine.
        self.ports = {name: free_port() for name in (
            "master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
            "filer.port", "filer.port.grpc", "s3.port.grpc")}
        self.proc: Optional[subprocess.Popen] = None
        self.log_path = self.data_dir / "weed.log"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        data = self.data_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "s3.json"
        config.write_text(json.dumps({"identities": [{
            "name": "tusminio",
            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }]}))
        return [
            weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={data}",
            "-filer", "-s3", f"-s3.port={self.port}", f"-s3.config={config}",
            *[f"-{name}={port}" for name, port in self.ports.items()],
            "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
            f"-filer.localSocket={self.data_dir / 'filer.sock'}",
            f"-s3.localSocket={self.data_dir / 's3.sock'}",
            # Small volumes, and room for many: each bucket (collection) grows volumes of its own.
            "-master.volumeSizeLimitMB=256", "-volume.max=64",
            "-master.resumeState=false", "-volume.preStopSeconds=0",
        ]

    def start(self, timeout: float = 90.0) -> "SeaweedProcess":
        command = self._command()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until a PUT is stored. The S3 gateway answers well before that: the master holds
        back volume ids for a few seconds after it starts, and object writes wait for the
        filer's lock ring (about 10 s from a cold start, 4 s from a restart)."""
        client = Minio(self.endpoint, ACCESS_KEY, SECRET_KEY, secure=False,
                       http_client=urllib3.PoolManager(timeout=30, retries=False))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"SeaweedFS exited; see {self.log_path}")
            try:
                if not client.bucket_exists(READY_BUCKET):
                    client.make_bucket(READY_BUCKET)
                client.put_object(READY_BUCKET, "ready", io.BytesIO(b"ready"), 5)
                client.remove_object(READY_BUCKET, "ready")  # tests count what is stored
                return
            except (MinioException, urllib3.exceptions.HTTPError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS did not become ready in {timeout}s; see {self.log_path}")

    def stop(self, sig: int = signal.SIGKILL) -> None:
        """SIGKILL unless told: a SIGTERM takes SeaweedFS 15 s (its parts drain one after the
        other), and the tests need it gone, not tidy."""
        stop_group(self.proc, sig)
        self.proc = None
