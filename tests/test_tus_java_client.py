"""Interop with tus-java-client 0.5.1 (Maven Central, named in tests/java/pom.xml): the test
copies its jars with Maven, compiles tests/java/TusJavaUpload.java with javac, uploads part of a
file, exits as if killed, and resumes in a second JVM from the server's offset with the URL the
client kept in its store. Java's HttpURLConnection cannot send PATCH, so this also covers the
client's `X-HTTP-Method-Override: PATCH` on POST. The download's SHA-256 must match."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import requests

from .helpers import MIB, TUS, sha256
from .minio_process import ROOT

JAVA_DIR = ROOT / "tests" / "java"


@pytest.fixture(scope="module")
def java_client(tmp_path_factory) -> list[str]:
    tools = {name: shutil.which(name) for name in ("java", "javac", "mvn")}
    missing = [name for name, path in tools.items() if path is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} missing for the tus-java-client test: "
                    "apt-get install default-jdk-headless maven")
    out = tmp_path_factory.mktemp("tus-java")
    fetched = subprocess.run(
        [tools["mvn"], "-B", "-q", "-f", str(JAVA_DIR / "pom.xml"),
         "dependency:copy-dependencies", f"-DoutputDirectory={out / 'lib'}"],
        capture_output=True, text=True, timeout=600)
    assert fetched.returncode == 0, f"mvn failed:\n{fetched.stdout}\n{fetched.stderr}"
    assert (out / "lib" / "tus-java-client-0.5.1.jar").exists()
    classpath = f"{out / 'lib'}/*"
    compiled = subprocess.run([tools["javac"], "-cp", classpath, "-d", str(out / "classes"),
                               str(JAVA_DIR / "TusJavaUpload.java")],
                              capture_output=True, text=True, timeout=300)
    assert compiled.returncode == 0, compiled.stderr
    return [tools["java"], "-cp", f"{out / 'classes'}{os.pathsep}{classpath}", "TusJavaUpload"]


def run(command: list[str], endpoint: str, path, store, stop_after: int | None = None):
    args = command + [endpoint, str(path), str(store)]
    if stop_after is not None:
        args.append(str(stop_after))
    return subprocess.run(args, capture_output=True, text=True, timeout=180)


def test_tus_java_client_resumes_across_processes(java_client, server, tmp_path):
    data = os.urandom(4 * MIB + 321)
    path = tmp_path / "java.bin"
    path.write_bytes(data)
    store = tmp_path / "store.properties"

    first = run(java_client, server.files_url(), path, store, stop_after=2)
    assert first.returncode == 3, first.stderr
    assert "starting at offset 0 of" in first.stderr
    [partial] = requests.get(server.url + "/files").json()["uploads"]
    assert not partial["completed"]
    head = requests.head(partial["url"], headers=TUS)
    assert int(head.headers["Upload-Offset"]) == 2 * MIB

    second = run(java_client, server.files_url(), path, store)
    assert second.returncode == 0, second.stderr
    assert f"starting at offset {2 * MIB} of {len(data)}" in second.stderr
    assert second.stdout.strip() == partial["url"]
    [done] = requests.get(server.url + "/files").json()["uploads"]
    assert done["id"] == partial["id"] and done["completed"] and done["filename"] == "java.bin"
    download = requests.get(partial["url"])
    assert download.status_code == 200
    assert sha256(download.content) == sha256(data)
