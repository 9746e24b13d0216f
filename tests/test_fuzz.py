"""Hypothesis throws generated tus requests at the server: never a 500, and afterwards a normal
upload still works byte for byte."""
from __future__ import annotations

import os

import requests
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from .helpers import TUS, create_url, patch, sha256

HEADER_NAMES = ["Tus-Resumable", "Upload-Length", "Upload-Offset", "Upload-Defer-Length",
                "Upload-Metadata", "Upload-Checksum", "Upload-Concat", "Content-Type",
                "X-HTTP-Method-Override", "Range", "If-Range", "If-None-Match"]
# Printable ASCII: what an HTTP client can put in a header value.
header_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), max_size=60)
header_value = st.one_of(
    header_text,
    st.integers(min_value=-5, max_value=2**70).map(str),
    st.sampled_from(["1.0.0", "0.2.2", "1", "application/offset+octet-stream", "sha1 AAAA",
                     "md5 1B2M2Y8AsgTpgAmY7PhCfg==", "partial", "final;/files/tus-" + "0" * 32,
                     "filename aGVsbG8=", "bytes=0-5", "bytes=-3", "PATCH", "DELETE", "HEAD"]),
)
requests_strategy = st.fixed_dictionaries({
    "method": st.sampled_from(["POST", "HEAD", "PATCH", "DELETE", "GET", "OPTIONS"]),
    "target": st.sampled_from(["collection", "existing", "finished", "unknown", "garbage"]),
    "headers": st.dictionaries(st.sampled_from(HEADER_NAMES), header_value, max_size=6),
    "body": st.binary(max_size=64),
})


def test_generated_tus_requests_never_get_a_500(make_server):
    server = make_server(chunk_size=16, max_size=10_000)
    existing = create_url(server.url, 40)
    finished = create_url(server.url, 3)
    patch(finished, 0, b"abc")
    targets = {
        "collection": server.files_url(),
        "existing": existing,
        "finished": finished,
        "unknown": server.files_url() + "tus-" + "0" * 32,
        "garbage": server.files_url() + "%00..%2f",
    }
    seen_statuses: set[int] = set()

    @hsettings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck),
               database=None)
    @given(requests_strategy)
    def run(case):
        # Overridden to HEAD, the answer has no body whatever its Content-Length says; the
        # client must not wait for one.
        overridden_to_head = case["headers"].get("X-HTTP-Method-Override", "").upper() == "HEAD"
        response = requests.request(case["method"], targets[case["target"]],
                                    headers=case["headers"], data=case["body"], timeout=30,
                                    stream=overridden_to_head)
        seen_statuses.add(response.status_code)
        text = "" if overridden_to_head else response.text
        response.close()
        assert response.status_code < 500, (case, response.status_code, text)
        assert "Traceback" not in text

    run()
    assert len(seen_statuses) >= 5  # the generator reached many outcomes, not one error path

    data = os.urandom(100)
    url = create_url(server.url, len(data))
    assert patch(url, 0, data[:33]).status_code == 204
    assert patch(url, 33, data[33:]).status_code == 204
    assert sha256(requests.get(url).content) == sha256(data)
    response = requests.head(url, headers=TUS)
    assert response.headers["Upload-Offset"] == "100"
