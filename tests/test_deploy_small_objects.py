"""deploy/nginx-minio.conf: a small object's PUT that one node refuses goes to another at once.

nginx, from the deploy template, in front of two ways to one real MinIO: a loopback proxy that
answers every PUT of a state or lock generation or a heartbeat with MinIO's own 503
SlowDownWrite (a node short of drives after another died), and MinIO itself. Every such PUT
the app sends reaches MinIO once through the second way, within the same request, and the app
sends none of them twice; chunks go through the other pool as before.
"""
from __future__ import annotations

import io
import json
import re

import pytest

from tus_server.storage.layout import generation_key
from tus_server.storage.minio_backend import MinioStore
from tus_server.storage.store import UploadInfo, WriteFenced, new_upload_id

from .cluster import Nginx
from .test_refused_writes import RefusingProxy

SMALL_PUT = re.compile(rb"^PUT /[^ ]*/(\.tus/(info|lock)|instances/[0-9a-f]+)/\d+[ ?]")
KIB = 1024


@pytest.fixture
def refusing_node(minio, tmp_path):
    proxy = RefusingProxy(minio.endpoint, SMALL_PUT)
    proxy.refuse = 10 ** 6  # every small PUT that reaches it
    nginx = Nginx("minio", tmp_path, [proxy.endpoint, minio.endpoint]).start()
    yield proxy, nginx
    nginx.stop()
    proxy.close()


def access_lines(nginx: Nginx) -> list[str]:
    return (nginx.run_dir / "nginx-minio-access.log").read_text().splitlines()


def test_a_refused_state_or_lock_put_is_sent_to_the_next_node_by_nginx(refusing_node, settings):
    proxy, nginx = refusing_node
    store = MinioStore(settings.with_overrides(minio_endpoint=nginx.address,
                                               heartbeat_interval=0))
    info = store.create(UploadInfo(id=new_upload_id(), length=8 * KIB, filename="small.bin"))
    data = bytes(range(256)) * 32
    for n in range(8):
        store.write(info.id, n * KIB, io.BytesIO(data[n * KIB:(n + 1) * KIB]), KIB)
    assert store.get(info.id).offset == 8 * KIB
    assert b"".join(store.open(info.id, 0, 8 * KIB)) == data

    small = [line for line in access_lines(nginx) if '"PUT ' in line and
             re.search(r"/\.tus/(info|lock)/\d+ ", line)]
    keys = [line.split('"')[1].split()[1] for line in small]
    assert len(keys) == len(set(keys)), "the app sent a small PUT twice"
    assert all(" 200 " in line for line in small), small
    rerouted = [line for line in small if "status=503, 200" in line]
    assert proxy.refused >= 1 and len(rerouted) == proxy.refused, (proxy.refused, small)


def test_a_commit_that_finds_its_own_first_try_counts_it(store):
    """A balancer sent the state PUT on after the node that stored it died: the second try
    finds the very bytes it sends (412), and the commit counts them as its own."""
    info = store.create(UploadInfo(id=new_upload_id(), length=KIB, filename="own.bin"))
    info.writer = "writer-token"
    first_try = json.dumps(info.to_dict(), separators=(",", ":")).encode()
    target = info.version + 1
    assert store.objects.conditional_put(info.id, generation_key(target), first_try,
                                         if_none_match=True)
    assert store.generations.commit(info, info.version) == target
    other = UploadInfo.from_dict(json.loads(first_try))
    other.writer, other.version = "another-writer", info.version - 1
    with pytest.raises(WriteFenced):
        store.generations.commit(other, target - 1)
