"""The system bucket (TUS_SYSTEM_BUCKET): small objects of the server's own, never an upload's.

Its name can never be an upload id (those are `tus-` + 32 hex; config.py checks it). The usage
records, the owners' indexes and the concatenation index (storage/usage.py,
storage/concatenations.py) keep their objects here, through these few verbs.
"""
from __future__ import annotations

import io
from typing import Optional

from minio.error import S3Error

from .objects import Objects, storage_errors


class SystemBucket:
    def __init__(self, objects: Objects, bucket: str):
        self.objects = objects
        self.bucket = bucket

    def ensure(self) -> None:
        client = self.objects.client
        with storage_errors():
            if not client.bucket_exists(self.bucket):
                try:
                    client.make_bucket(self.bucket)
                except S3Error as exc:  # another process made it first
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

    def get(self, key: str) -> tuple[Optional[bytes], Optional[str]]:
        """(bytes, ETag) of an object, (None, None) when there is none."""
        return self.objects.read_in_bucket(self.bucket, key, "system")

    def put(self, key: str, data: bytes, etag: Optional[str]) -> Optional[str]:
        """Store `data` if the object is still at `etag` (None: only if there is none); the
        new ETag, or None when the precondition failed."""
        return self.objects.put_in_bucket(self.bucket, key, data,
                                          {"Content-Type": "application/json"},
                                          if_match=etag, if_none_match=etag is None,
                                          context="system")

    def put_empty(self, key: str) -> None:
        with storage_errors("system"):
            self.objects.client.put_object(self.bucket, key, io.BytesIO(b""), 0)

    def remove(self, key: str) -> None:
        with storage_errors("system"):
            self.objects.client.remove_object(self.bucket, key)

    def listing(self, prefix: str) -> list:
        """The objects below `prefix` (name order), with their sizes and times."""
        with storage_errors("system"):
            return list(self.objects.client.list_objects(self.bucket, prefix=prefix,
                                                         recursive=True))

    def names(self, prefix: str) -> list[str]:
        return [o.object_name for o in self.listing(prefix)]
