"""Concatenation (tus `concatenation` extension): partial uploads joined by a final upload.

Raw HTTP throughout, so the headers the spec talks about are in plain sight. The server's chunk
size is small here so that each partial spans several chunk objects and ranges cross both chunk
and partial boundaries.
"""
from __future__ import annotations

import base64
import hashlib
import time

import pytest
import requests

from .helpers import (
    TUS,
    chunk_objects,
    create,
    head,
    patch,
    sha256,
    stored_objects,
    upload_id,
)

CHUNK = 256 * 1024
# Sizes that are not multiples of the chunk size, so partials end mid-chunk.
SIZES = (700_001, 300_007, 5)


@pytest.fixture
def concat_server(make_server):
    return make_server(chunk_size=CHUNK)


def data_of(size: int, seed: int) -> bytes:
    """Distinct, reproducible bytes per partial (a mix-up between partials shows in the digest)."""
    block = hashlib.sha256(f"partial-{seed}".encode()).digest()
    return (block * (size // len(block) + 1))[:size]


def create_partial(base: str, data: bytes, finish: bool = True) -> str:
    response = create(base, len(data), headers={"Upload-Concat": "partial"})
    assert response.status_code == 201, response.text
    url = response.headers["Location"]
    if finish and data:
        done = patch(url, 0, data)
        assert done.status_code == 204, done.text
        assert done.headers["Upload-Offset"] == str(len(data))
    return url


def create_final(base: str, urls: list[str], headers: dict | None = None) -> requests.Response:
    return create(base, headers={"Upload-Concat": "final;" + " ".join(urls), **(headers or {})})


def path_of(url: str) -> str:
    return "/files/" + upload_id(url)


@pytest.fixture
def joined(concat_server):
    """Three finished partials and a final upload joining them in order."""
    base = concat_server.url
    parts = [data_of(size, seed) for seed, size in enumerate(SIZES)]
    urls = [create_partial(base, data) for data in parts]
    response = create_final(base, urls)
    assert response.status_code == 201, response.text
    final = response.headers["Location"]
    # Creation starts a background digest pass that briefly holds the final's lock and rewrites
    # its info; let it finish so the tests below see a settled upload.
    assert wait_for_repr_digest(final), "the final upload's digest was never computed"
    return base, urls, parts, final


def wait_for_repr_digest(url: str, timeout: float = 20) -> str | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with requests.get(url, stream=True) as response:
            digest = response.headers.get("Repr-Digest")
        if digest:
            return digest
        time.sleep(0.1)
    return None


def test_options_advertise_concatenation(concat_server):
    response = requests.options(concat_server.files_url())
    assert response.status_code == 204
    assert "concatenation" in response.headers["Tus-Extension"].split(",")
    assert "concatenation-unfinished" not in response.headers["Tus-Extension"].split(",")


def test_partial_creation_head_says_partial(concat_server):
    url = create_partial(concat_server.url, data_of(1000, 1), finish=False)
    response = head(url)
    assert response.status_code == 200
    assert response.headers["Upload-Concat"] == "partial"
    assert response.headers["Upload-Offset"] == "0"
    assert response.headers["Upload-Length"] == "1000"


def test_final_length_is_the_sum_of_its_partials(joined):
    _, urls, parts, final = joined
    response = head(final)
    assert response.status_code == 200
    total = sum(len(p) for p in parts)
    assert response.headers["Upload-Length"] == str(total)
    assert response.headers["Upload-Offset"] == str(total)
    concat = response.headers["Upload-Concat"]
    assert concat.startswith("final;")
    named = concat[len("final;"):].split()
    assert [upload_id(u) for u in named] == [upload_id(u) for u in urls]


def test_final_download_is_the_partials_in_order(joined):
    _, _, parts, final = joined
    whole = b"".join(parts)
    response = requests.get(final)
    assert response.status_code == 200
    assert int(response.headers["Content-Length"]) == len(whole)
    assert sha256(response.content) == sha256(whole)


def test_final_download_carries_repr_digest_once_computed(joined):
    _, _, parts, final = joined
    expected = "sha-256=:" + base64.b64encode(hashlib.sha256(b"".join(parts)).digest()).decode() + ":"
    assert wait_for_repr_digest(final) == expected


@pytest.mark.parametrize("start,end", [
    (SIZES[0] - 10, SIZES[0] + 10),          # across the first partial boundary
    (CHUNK - 3, SIZES[0] + SIZES[1] + 2),      # chunk edge of partial 1 to the last partial
    (0, SIZES[0] + SIZES[1] + SIZES[2] - 1),   # everything, as a range
    (SIZES[0], SIZES[0]),                       # the first byte of partial 2 only
])
def test_range_on_final_spanning_partials(joined, start, end):
    _, _, parts, final = joined
    whole = b"".join(parts)
    response = requests.get(final, headers={"Range": f"bytes={start}-{end}"})
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(whole)}"
    assert response.content == whole[start:end + 1]


def test_patch_on_final_is_403_and_changes_nothing(joined, concat_server):
    _, urls, parts, final = joined
    store = concat_server.store
    before_final = stored_objects(store, upload_id(final))
    before_partials = [stored_objects(store, upload_id(u)) for u in urls]
    total = sum(len(p) for p in parts)

    for offset in (0, total):
        response = patch(final, offset, b"x" * 10)
        assert response.status_code == 403, response.text

    after = head(final)
    assert after.headers["Upload-Offset"] == str(total)
    assert after.headers["Upload-Length"] == str(total)
    assert chunk_objects(store, upload_id(final)) == {}
    assert {k: v for k, v in stored_objects(store, upload_id(final)).items()
            if not k.startswith(".tus/lock")} == \
        {k: v for k, v in before_final.items() if not k.startswith(".tus/lock")}
    assert [stored_objects(store, upload_id(u)) for u in urls] == before_partials
    assert sha256(requests.get(final).content) == sha256(b"".join(parts))


def test_patch_on_partial_works_like_any_upload(concat_server):
    data = data_of(CHUNK + 100, 7)
    url = create_partial(concat_server.url, data, finish=False)
    first = patch(url, 0, data[:1000])
    assert first.status_code == 204
    second = patch(url, 1000, data[1000:])
    assert second.status_code == 204
    assert second.headers["Upload-Offset"] == str(len(data))


def test_final_naming_an_unfinished_partial_is_400(concat_server):
    base = concat_server.url
    done = create_partial(base, data_of(100, 1))
    unfinished = create_partial(base, data_of(100, 2), finish=False)
    patch(unfinished, 0, data_of(100, 2)[:50])
    response = create_final(base, [done, unfinished])
    assert response.status_code == 400, response.text
    assert "Location" not in response.headers


def test_final_naming_an_unknown_upload_is_400(concat_server):
    base = concat_server.url
    done = create_partial(base, data_of(100, 1))
    unknown = base + "/files/tus-" + "0" * 32
    response = create_final(base, [done, unknown])
    assert response.status_code == 400, response.text


def test_final_naming_something_that_is_no_upload_url_is_400(concat_server):
    base = concat_server.url
    done = create_partial(base, data_of(100, 1))
    response = create_final(base, [done, base + "/elsewhere/tus-" + "1" * 32])
    assert response.status_code == 400, response.text
    response = create_final(base, [done, base + "/files/not-an-id"])
    assert response.status_code == 400, response.text


def test_final_naming_a_plain_upload_is_400(concat_server):
    base = concat_server.url
    done = create_partial(base, data_of(100, 1))
    plain = create(base, 3).headers["Location"]
    assert patch(plain, 0, b"abc").status_code == 204
    response = create_final(base, [done, plain])
    assert response.status_code == 400, response.text


def test_final_with_upload_length_is_400(concat_server):
    base = concat_server.url
    done = create_partial(base, data_of(100, 1))
    response = create_final(base, [done], headers={"Upload-Length": "100"})
    assert response.status_code == 400, response.text


def test_final_without_urls_is_400(concat_server):
    response = create(concat_server.url, headers={"Upload-Concat": "final;"})
    assert response.status_code == 400, response.text


def test_absolute_and_relative_urls_are_both_accepted(concat_server):
    base = concat_server.url
    parts = [data_of(1000, 1), data_of(2000, 2)]
    urls = [create_partial(base, data) for data in parts]
    assert urls[0].startswith("http://")
    mixed = [urls[0], path_of(urls[1])]
    for named in (urls, [path_of(u) for u in urls], mixed):
        response = create_final(base, named)
        assert response.status_code == 201, (named, response.text)
        got = requests.get(response.headers["Location"])
        assert got.status_code == 200
        assert got.content == b"".join(parts)


def test_one_partial_in_two_finals(concat_server):
    # One partial named twice in the same final is refused (tests/test_hardening.py).
    base = concat_server.url
    a, b = data_of(1234, 1), data_of(4321, 2)
    url_a, url_b = create_partial(base, a), create_partial(base, b)
    ab = create_final(base, [url_a, url_b]).headers["Location"]
    ba = create_final(base, [url_b, url_a]).headers["Location"]
    assert requests.get(ab).content == a + b
    assert requests.get(ba).content == b + a


def test_terminating_a_final_leaves_partials_and_other_finals(joined, concat_server):
    base, urls, parts, final = joined
    other = create_final(base, urls).headers["Location"]
    response = requests.delete(final, headers=TUS)
    assert response.status_code == 204
    assert head(final).status_code == 404
    assert requests.get(final).status_code == 404
    for url, data in zip(urls, parts):
        partial = head(url)
        assert partial.status_code == 200
        assert partial.headers["Upload-Offset"] == str(len(data))
    got = requests.get(other)
    assert got.status_code == 200
    assert sha256(got.content) == sha256(b"".join(parts))


def test_get_on_a_partial_is_403(joined):
    _, urls, _, _ = joined
    for url in urls:
        response = requests.get(url)
        assert response.status_code == 403, response.text


def test_partials_are_listed_as_no_download(joined, concat_server):
    _, urls, _, final = joined
    listing = requests.get(concat_server.files_url(), params={"per_page": 500}).json()
    by_id = {u["id"]: u for u in listing["uploads"]}
    for url in urls:
        assert by_id[upload_id(url)]["concat"] == "partial"
        assert by_id[upload_id(url)]["download_url"] is None
    assert by_id[upload_id(final)]["concat"] == "final"
    assert by_id[upload_id(final)]["download_url"]


def test_final_of_an_empty_partial(concat_server):
    base = concat_server.url
    empty, other_empty = create_partial(base, b""), create_partial(base, b"")
    data = data_of(10, 3)
    full = create_partial(base, data)
    response = create_final(base, [empty, full, other_empty])
    assert response.status_code == 201, response.text
    final = response.headers["Location"]
    assert head(final).headers["Upload-Length"] == "10"
    assert requests.get(final).content == data
