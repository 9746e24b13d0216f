"""Conditional PUTs are signed for the bucket's region, found where minio-py finds it: a MinIO
whose site region is not us-east-1 refuses a PUT signed for another region, so a region taken
from the wrong place (a default, an unconfigured MINIO_REGION) fails here."""
from __future__ import annotations

import pytest
from minio import Minio

from tus_server.config import Settings
from tus_server.storage.objects import CRC32C_HEADER, Objects, crc32c_b64
from tus_server.storage.store import StorageUnavailable, new_upload_id

from .minio_process import ACCESS_KEY, SECRET_KEY, MinioProcess

REGION = "eu-west-3"


class RegionalMinio(MinioProcess):
    def env(self) -> dict:
        return dict(super().env(), MINIO_SITE_REGION=REGION)


@pytest.fixture(scope="module")
def regional(tmp_path_factory):
    server = RegionalMinio(tmp_path_factory.mktemp("regional-minio")).start()
    yield server
    server.stop()


def _objects(server: MinioProcess, region: str) -> Objects:
    return Objects(Settings(minio_endpoint=server.endpoint, minio_access_key=ACCESS_KEY,
                            minio_secret_key=SECRET_KEY, cleanup_interval=0,
                            minio_region=region))


def _upload(server: MinioProcess) -> str:
    uid = new_upload_id()  # bucket layout: the upload's bucket
    Minio(server.endpoint, ACCESS_KEY, SECRET_KEY, secure=False,
          region=REGION).make_bucket(uid)
    return uid


def _put(objects: Objects, uid: str, key: str, body: bytes, **condition):
    return objects.put_if(uid, key, body, {CRC32C_HEADER: crc32c_b64(body)}, **condition)


def test_region_from_bucket_location_once_per_bucket(regional):
    objects = _objects(regional, "")  # MINIO_REGION empty: minio-py asks the bucket
    uid = _upload(regional)
    etag = _put(objects, uid, "a", b"first", if_none_match=True)
    assert etag
    assert _put(objects, uid, "a", b"again", if_none_match=True) is None  # 412: taken
    assert _put(objects, uid, "a", b"second", if_match=etag) not in (None, etag)
    assert _put(objects, uid, "a", b"stale", if_match=etag) is None
    assert objects.http.counts["GET"] == 1  # one GetBucketLocation, then the client's cache
    assert objects.client.get_object(uid, "a").read() == b"second"


def test_configured_region_is_used_without_asking(regional):
    objects = _objects(regional, REGION)
    uid = _upload(regional)
    assert _put(objects, uid, "a", b"x", if_none_match=True)
    assert objects.http.counts["GET"] == 0


def test_put_signed_for_another_region_is_refused(regional):
    """What the two tests above rely on: this server checks the signature's region."""
    objects = _objects(regional, "us-east-1")
    uid = _upload(regional)
    with pytest.raises(StorageUnavailable):
        _put(objects, uid, "a", b"x", if_none_match=True)
