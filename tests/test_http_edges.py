"""HTTP edges a new user meets with general tools: `curl -I` on a download, empty answers with
no Content-Type, oversized headers under gunicorn, a `filetype` with parameters."""
from __future__ import annotations

import shutil
import socket
import subprocess

import pytest
import requests

from .helpers import TUS, create, create_url, head, metadata, patch

DATA = b"hello, edges\n" * 100


def finished_upload(url: str, filetype: str = "application/octet-stream") -> str:
    upload_url = create_url(url, len(DATA), metadata(filename="edges.txt", filetype=filetype))
    assert patch(upload_url, 0, DATA).status_code == 204
    return upload_url


def test_head_without_tus_resumable_is_a_plain_head_of_the_download(server):
    upload_url = finished_upload(server.url, "text/plain")
    get = requests.get(upload_url)
    response = requests.head(upload_url)  # no Tus-Resumable: curl -I, wget --spider
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(DATA))
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == get.headers["ETag"]
    assert response.content == b""
    assert "Upload-Offset" not in response.headers


def test_head_with_tus_resumable_stays_the_tus_head(server):
    upload_url = finished_upload(server.url)
    response = head(upload_url)
    assert response.status_code == 200
    assert response.headers["Upload-Offset"] == str(len(DATA))
    assert response.headers["Upload-Length"] == str(len(DATA))
    assert response.headers["Content-Length"] == "0"
    assert response.headers["Cache-Control"] == "no-store"
    assert "ETag" not in response.headers


def test_plain_head_of_an_unfinished_upload_is_still_412(server):
    upload_url = create_url(server.url, 10)
    response = requests.head(upload_url)
    assert response.status_code == 412
    assert response.headers["Tus-Version"] == "1.0.0"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_dash_i_on_a_finished_upload(server):
    upload_url = finished_upload(server.url)
    done = subprocess.run(["curl", "-sS", "-I", upload_url], capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    lines = {line.split(":", 1)[0].lower(): line.split(":", 1)[1].strip()
             for line in done.stdout.splitlines()[1:] if ":" in line}
    assert done.stdout.startswith("HTTP/1.1 200")
    assert lines["content-length"] == str(len(DATA))


def test_empty_201_and_204_carry_no_content_type(server):
    created = create(server.url, len(DATA))
    assert created.status_code == 201
    assert "Content-Type" not in created.headers
    upload_url = created.headers["Location"]
    patched = patch(upload_url, 0, DATA[:10])
    assert patched.status_code == 204
    assert "Content-Type" not in patched.headers
    options = requests.options(server.url + "/files/")
    assert options.status_code == 204
    assert "Content-Type" not in options.headers
    deleted = requests.delete(upload_url, headers=TUS)
    assert deleted.status_code == 204
    assert "Content-Type" not in deleted.headers


@pytest.mark.parametrize("filetype, served", [
    ("text/plain; charset=utf-8", "text/plain; charset=utf-8"),
    ('text/csv;charset="UTF-8"; header=present', 'text/csv; charset="UTF-8"; header=present'),
    ("text/plain; charset=utf-8; broken", "text/plain; charset=utf-8"),
    ("text/plain; x=a b", "text/plain"),
    ("not a type; charset=utf-8", "application/octet-stream"),
])
def test_filetype_parameters_are_kept_when_valid(server, filetype, served):
    upload_url = finished_upload(server.url, filetype)
    response = requests.get(upload_url)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == served
    assert response.content == DATA


def test_filetype_with_parameters_passes_the_type_rule(make_server):
    server = make_server(allowed_types=("text/*",))
    meta = metadata(filename="a.txt", filetype="text/plain; charset=utf-8")
    response = create(server.url, 1, meta)
    assert response.status_code == 201, response.text


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_oversized_header_gets_a_plain_text_431_under_gunicorn(gunicorn_server):
    served = gunicorn_server()
    big = "x" * 20000
    answer = _raw(served.port, (
        "HEAD /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
        f"Upload-Metadata: filename {big}\r\n\r\n").encode())
    head_part, _, body = answer.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 431 ")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    assert headers["tus-resumable"] == "1.0.0"
    assert headers["content-type"].startswith("text/plain")
    assert int(headers["content-length"]) == len(body)
    assert b"<html" not in body.lower()
    assert b"too large" in body


def test_too_many_headers_get_a_plain_text_431_under_gunicorn(gunicorn_server):
    served = gunicorn_server()
    many = "".join(f"X-Extra-{i}: {i}\r\n" for i in range(150))
    answer = _raw(served.port, (f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n").encode())
    assert answer.startswith(b"HTTP/1.1 431 ")
    assert b"\r\nTus-Resumable: 1.0.0\r\n" in answer
    assert b"Content-Type: text/plain" in answer
    assert b"<html" not in answer.lower()
    # the server still answers normal requests afterwards
    assert requests.get(served.url + "/healthz").status_code == 200
