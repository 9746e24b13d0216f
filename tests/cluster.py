"""The scale-out deployment on loopback, for tests: four MinIO nodes (one drive each, EC:2)
behind nginx, app instances under gunicorn behind a second nginx, configured from deploy/'s
nginx templates (the ones `make cluster` uses). Every process can be SIGKILLed and started
again on its port.
"""
from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

import requests
import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from tus_server.config import Settings
from tus_server.storage.instances import PREFIX as INSTANCES_PREFIX
from tus_server.storage.layout import LOCK_PREFIX
from tus_server.storage.lease import META as LOCK_META
from tus_server.storage.lease import parse_generation

from .conftest import GunicornServer
from .minio_process import ACCESS_KEY, ROOT, SECRET_KEY, MinioProcess

NODES = 4
# Ports below Linux's ephemeral range (32768-60999): a killed node's port must still be free
# when it starts again, and outgoing connections (of every process on the machine) take
# their local ports from that range.
PORTS = range(20000, 32000)


def stable_port() -> int:
    while True:
        port = random.choice(PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def nginx_binary() -> str:
    found = os.environ.get("TUS_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.access(found, os.X_OK):
        raise RuntimeError("no nginx: run `make nginx` (Debian's nginx package)")
    return found


def wait_until(check, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (requests.RequestException, OSError, S3Error, urllib3.exceptions.HTTPError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not come up in {timeout} s; see {log}")


class ClusterNode(MinioProcess):
    """One node of a distributed MinIO: one drive, the endpoints of all nodes."""

    def __init__(self, data_dir: Path, port: int, endpoints: list[str]):
        super().__init__(data_dir, drives=1, port=port)
        self.console_port = stable_port()
        self.endpoints = endpoints

    def drive_args(self) -> list[str]:
        return self.endpoints

    def env(self) -> dict:
        # For trying it on one machine only (deploy/README.md): the node's own loopback
        # endpoint, and drive folders on the root disk.
        return dict(super().env(), _MINIO_SERVER_LOCAL=self.endpoint, MINIO_CI_CD="1",
                    MINIO_STORAGE_CLASS_STANDARD="EC:2")

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class Nginx:
    """nginx from a deploy/ template, in the foreground of its own process group."""

    def __init__(self, name: str, run_dir: Path, servers: list[str]):
        self.name = name
        self.run_dir = run_dir
        self.servers = servers
        self.port = stable_port()
        self.proc: Optional[subprocess.Popen] = None
        self.error_log = run_dir / f"nginx-{name}-error.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def render(self) -> Path:
        lines = []
        for line in (ROOT / "deploy" / f"nginx-{self.name}.conf").read_text().splitlines():
            if "@SERVER@" in line:
                lines += [line.replace("@SERVER@", server) for server in self.servers]
            else:
                lines.append(line.replace("@LISTEN@", self.address)
                             .replace("@RUN_DIR@", str(self.run_dir)))
        conf = self.run_dir / f"nginx-{self.name}.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> "Nginx":
        conf = self.render()
        self.proc = subprocess.Popen(
            [nginx_binary(), "-e", str(self.error_log), "-p", str(self.run_dir), "-c", str(conf),
             "-g", "daemon off;"],
            stdout=subprocess.DEVNULL, stderr=open(self.error_log, "ab"),
            start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                raise RuntimeError(f"nginx exited; see {self.error_log}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        wait_until(listening, 10, f"nginx {self.name}", self.error_log)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None


def stop_instance(instance: GunicornServer) -> None:
    try:
        instance.kill(signal.SIGTERM)
    except subprocess.TimeoutExpired:
        instance.kill(signal.SIGKILL)


class Cluster:
    """4 MinIO nodes + nginx, `instances` app instances (gunicorn, one worker each) + nginx."""

    def __init__(self, base: Path, instances: int = 2, chunk_size: int = 5 * 1024 * 1024):
        self.base = base
        run = base / "run"
        run.mkdir(parents=True, exist_ok=True)
        ports = [stable_port() for _ in range(NODES)]
        endpoints = [f"http://127.0.0.1:{port}{base}/node{n}/drive"
                     for n, port in enumerate(ports, 1)]
        self.nodes = [ClusterNode(base / f"node{n}", port, endpoints)
                      for n, port in enumerate(ports, 1)]
        self.minio_lb = Nginx("minio", run, [node.endpoint for node in self.nodes])
        self.settings = Settings(
            minio_endpoint=self.minio_lb.address, minio_access_key=ACCESS_KEY,
            minio_secret_key=SECRET_KEY, cleanup_interval=0, layout="bucket",
            chunk_size=chunk_size, retry_after=1)
        self.instances = [GunicornServer(self.settings, base, stable_port(),
                                         extra_env={"TUS_BEHIND_PROXY": "1"})
                          for _ in range(instances)]
        self.app_lb = Nginx("app", run, [f"127.0.0.1:{i.port}" for i in self.instances])
        self.client = Minio(self.minio_lb.address, access_key=ACCESS_KEY,
                            secret_key=SECRET_KEY, secure=False)

    @property
    def url(self) -> str:
        return f"http://{self.app_lb.address}"

    def start(self) -> "Cluster":
        try:
            for node in self.nodes:
                node.start(wait=False)
            self.minio_lb.start()
            self.wait_for_quorum()
            self.wait_for_writes()  # a cluster just formed may not show what it just stored
            for instance in self.instances:
                instance.start()
            self.app_lb.start()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_for_quorum(self, timeout: float = 90) -> None:
        """`/minio/health/cluster` is 200 once the cluster can take writes."""
        url = f"http://{self.minio_lb.address}/minio/health/cluster"
        wait_until(lambda: requests.get(url, timeout=2).status_code == 200, timeout,
                   "the MinIO cluster's write quorum", self.nodes[0].log_path)

    def wait_for_writes(self, timeout: float = 90) -> None:
        """Until every node takes a write itself: a node that just rejoined answers 503 for
        a while after the cluster's health check says yes, and the next run must not start
        with two nodes out."""
        for node in self.nodes:
            client = Minio(node.endpoint, access_key=ACCESS_KEY, secret_key=SECRET_KEY,
                           secure=False)

            def writes():
                if not client.bucket_exists(self.settings.system_bucket):
                    client.make_bucket(self.settings.system_bucket)
                client.put_object(self.settings.system_bucket, f"probe/{node.port}",
                                  io.BytesIO(b"ok"), 2)
                return True
            wait_until(writes, timeout, f"writes through node {node.port}", node.log_path)
        # And every node sees every drive again: MinIO's maintenance check answers 200 only
        # when the cluster would keep its write quorum with that node down. A node that was
        # marked offline is only taken back at the next health check; killing another one
        # before that leaves two of four drives out and no write quorum (SlowDownWrite).
        for node in self.nodes:
            url = f"http://{node.endpoint}/minio/health/cluster?maintenance=true"
            wait_until(lambda: requests.get(url, timeout=2).status_code == 200, timeout,
                       f"node {node.port} seeing every drive", node.log_path)

    def stop(self) -> None:
        """Stop everything, front to back; a process that does not stop in time is killed."""
        for stop in ([self.app_lb.stop] + [lambda i=i: stop_instance(i) for i in self.instances]
                     + [self.minio_lb.stop] + [node.stop for node in self.nodes]):
            try:
                stop()
            except Exception as exc:  # the others must still stop
                print(f"cluster teardown: {exc!r}")

    # ----------------------------------------------------------------- state
    def wipe(self) -> None:
        """Remove every upload (their buckets), so that runs do not see each other's."""
        for bucket in self.client.list_buckets():
            if bucket.name.startswith("tus-"):
                for _ in range(10):  # a request of the last run may still be putting
                    names = [o.object_name for o in self.client.list_objects(bucket.name,
                                                                             recursive=True)]
                    if names:
                        list(self.client.remove_objects(bucket.name,
                                                        [DeleteObject(n) for n in names]))
                    try:
                        self.client.remove_bucket(bucket.name)
                        break
                    except S3Error as exc:
                        if exc.code != "BucketNotEmpty":
                            raise
                        time.sleep(0.5)

    def lock_instance(self, upload_id: str) -> Optional[str]:
        """The instance id named by an upload's lock, None when nobody holds it."""
        try:
            newest = next(iter(self.client.list_objects(upload_id, prefix=LOCK_PREFIX,
                                                        include_user_meta=True)), None)
        except Exception:
            return None
        label = newest and next((v for k, v in (newest.metadata or {}).items()
                                 if k.lower() == f"x-amz-meta-{LOCK_META}"), None)
        lock = newest and parse_generation(newest.object_name[len(LOCK_PREFIX):], label)
        return lock.instance if lock and lock.state != "released" else None

    def instance_by_heartbeat(self, instance_id: str) -> Optional[GunicornServer]:
        """The app instance whose worker writes heartbeat `instance_id`."""
        try:
            newest = next(iter(self.client.list_objects(
                self.settings.system_bucket, prefix=f"{INSTANCES_PREFIX}{instance_id}/")))
            response = self.client.get_object(self.settings.system_bucket, newest.object_name)
        except Exception:
            return None
        try:
            pid = json.loads(response.read())["pid"]
        finally:
            response.close()
            response.release_conn()
        for instance in self.instances:
            if instance.proc is not None and pid in instance.worker_pids():
                return instance
        return None

    def minio_log_mark(self) -> int:
        log = self.minio_lb.run_dir / "nginx-minio-access.log"
        return log.stat().st_size if log.exists() else 0

    def requests_between(self, pool: str, began: float, ended: float, since: int = 0,
                         containing: str = "") -> list[str]:
        """The access-log lines of balancer `pool` ("app" or "minio") for requests that ended
        between `began` and `ended` (Unix seconds), shortened: "<end> <method> <target>
        <status> rt=<seconds> <upstream>". What a stall was made of."""
        lb = self.app_lb if pool == "app" else self.minio_lb
        found = []
        with open(lb.run_dir / f"nginx-{pool}-access.log", "rb") as log:
            log.seek(since)
            for line in log.read().decode(errors="replace").splitlines():
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
                try:
                    at = float(fields.get("t", "0"))
                    method, target = line.split('"')[1].split()[:2]
                    status = line.split('"')[2].split()[0]
                except (ValueError, IndexError):
                    continue
                if began <= at <= ended and containing in target:
                    clock = time.strftime("%H:%M:%S", time.gmtime(at)) + f"{at % 1:.3f}"[1:]
                    found.append(f"{clock} {method} {target.split('?')[0][-60:]} {status} "
                                 f"rt={fields.get('rt', '?')} {fields.get('upstream', '?')}")
        return found

    def slow_minio_requests(self, since: int, seconds: float = 5.0) -> list[str]:
        """MinIO requests (from nginx's access log, after offset `since`) that took longer
        than `seconds`: "<method> <key> <seconds> s on <node>"."""
        slow = []
        with open(self.minio_lb.run_dir / "nginx-minio-access.log", "rb") as log:
            log.seek(since)
            for line in log.read().decode(errors="replace").splitlines():
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f and
                              f.split("=", 1)[0] in ("rt", "upstream"))
                try:
                    took = float(fields.get("rt", "0"))
                except ValueError:
                    continue
                if took > seconds:
                    method, target = line.split('"')[1].split()[:2]
                    slow.append(f"{method} {target.split('?')[0]} {took:.1f} s on "
                                f"{fields.get('upstream', '?')}")
        return slow

