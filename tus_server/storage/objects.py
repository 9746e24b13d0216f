"""The S3 requests an upload needs, and the one translation of their failures.

minio-py covers plain reads, listings and deletes. Writes that carry an S3 precondition
(`If-Match`, `If-None-Match: *`) are signed here and sent through our own urllib3 pool:
minio-py 7.2's `put_object` can neither send preconditions nor take a buffer without copying
and hashing it again. Each is signed once, by minio-py's SigV4 signer (`sign_v4_s3`), in its
headers, for the URL and region minio-py itself would use (`_signed_put`: its URL builder, path
or virtual-host style, and its per-bucket region, from MINIO_REGION or one GetBucketLocation).
The signature covers the host and every `x-amz-*` header, which AWS S3 and SeaweedFS require (a
presigned URL would leave out the chunk's CRC32C), and names the payload UNSIGNED-PAYLOAD, so
the bytes go out as they are, hashed by nobody. The preconditions stay unsigned, as S3 allows.

The upload's state is written by `generations.py` on top of these verbs.
"""
from __future__ import annotations

import base64
import collections
import logging
import re
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Optional
from urllib.parse import urlunsplit

import crc32c
import urllib3
from minio import Minio
from minio.credentials import Credentials
from minio.deleteobjects import DeleteObject
from minio.error import MinioException, S3Error
from minio.signer import sign_v4_s3

from .. import cooperative
from . import chores
from ..config import Settings
from .layout import location
from .store import StorageUnavailable, UploadNotFound

log = logging.getLogger("tus_server.store")

NOT_FOUND_CODES = {"NoSuchBucket", "NoSuchKey", "NoSuchUpload", "ResourceNotFound"}
# Each chunk's integrity value: S3's native CRC32C (written since the performance work), or a
# SHA-256 in user metadata (chunks written by earlier versions; still read and verified).
CRC32C_HEADER = "x-amz-checksum-crc32c"
SHA256_META = "x-amz-meta-sha256"
CHECKSUM_MODE = {"x-amz-checksum-mode": "ENABLED"}  # ask for the stored CRC32C in an answer
# Timeouts of lock and heartbeat requests: an answer later than this says nothing useful.
QUICK = urllib3.Timeout(connect=2.0, read=3.0)
TIDY = urllib3.Timeout(connect=1.0, read=1.0)
# A distributed MinIO node may refuse every write for seconds after another node died or came
# back (503 SlowDownWrite, "too few drives": it wrote nothing, or undid what it wrote) while
# the other nodes take them (bench/node_loss_probe.py). Such a PUT is sent again after each
# of these pauses (s), through the balancer to whichever node it picks, then answered 503:
# 3.55 s in all (with 1.55 s, a scale-out run still saw every try of a PUT refused, and the
# client's 503 and retry cost it 4 s more).
WRITE_REFUSED = "SlowDownWrite"
REFUSED_PAUSES = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0)
# The same for a heartbeat, within its interval: a live instance whose beats are refused for
# two seconds looks dead, and its running PATCHes are taken over.
BEAT_REFUSED_PAUSES = (0.05, 0.1, 0.2, 0.4)


def error_code(response) -> str:
    """The S3 error `<Code>` of an answer's body ("" when it has none)."""
    found = re.search(rb"<Code>([^<]{1,64})</Code>", response.data or b"")
    return found.group(1).decode(errors="replace") if found else ""


def refused_for_quorum(response) -> bool:
    """Did MinIO refuse this PUT before storing it (`WRITE_REFUSED`)?"""
    return response.status == 503 and error_code(response) == WRITE_REFUSED


def no_node_answered(response) -> bool:
    """A balancer's 502 (deploy/nginx-minio.conf): every node it tried failed, or it had left
    them all out for a moment. The PUT may have been stored by a node that died before it
    answered."""
    return response.status == 502 and not error_code(response)


def crc32c_b64(data) -> str:
    """The CRC32C of `data` as S3 spells it: base64 of the 4 big-endian bytes."""
    return crc32c_b64_of(crc32c.crc32c(data))


def crc32c_b64_of(value: int) -> str:
    """A CRC32C value (as `crc32c.crc32c` returns it) as S3 spells it."""
    return base64.b64encode(value.to_bytes(4, "big")).decode()


@contextmanager
def storage_errors(upload_id: str = ""):
    """Translate MinIO and network failures into store errors (detail to the log only)."""
    try:
        yield
    except S3Error as exc:
        if exc.code in NOT_FOUND_CODES:
            raise UploadNotFound(upload_id) from exc
        log.warning("MinIO answered %s upload_id=%s", exc.code, upload_id)
        raise StorageUnavailable(f"MinIO answered {exc.code}") from exc
    except (urllib3.exceptions.HTTPError, OSError, MinioException) as exc:
        log.warning("MinIO unreachable (%s) upload_id=%s", type(exc).__name__, upload_id)
        raise StorageUnavailable(f"MinIO unreachable: {type(exc).__name__}") from exc


def timed_out(exc: BaseException) -> bool:
    """Was a StorageUnavailable a request that got no answer in time (a read timeout)?"""
    cause = exc.__cause__
    if isinstance(cause, urllib3.exceptions.MaxRetryError):
        cause = cause.reason
    return isinstance(cause, (urllib3.exceptions.ReadTimeoutError, TimeoutError))


class CountingPool(urllib3.PoolManager):
    """The connection pool, counting MinIO requests by method (for the README's round-trip
    figures and for metrics)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.counts: collections.Counter = collections.Counter()
        self._counts_guard = threading.Lock()

    def urlopen(self, method, url, *args, **kwargs):
        with self._counts_guard:
            self.counts[method] += 1
        return super().urlopen(method, url, *args, **kwargs)


class Objects:
    """One MinIO client and connection pool, shared by every part of the store."""

    def __init__(self, settings: Settings, client: Optional[Minio] = None):
        self.settings = settings
        self.http = CountingPool(
            # Under gevent a worker has many more requests in flight: a larger pool keeps
            # bursts (every open upload's lock poll) from opening and discarding connections.
            maxsize=256 if cooperative.active() else 64,
            # Bounded: a key whose last write a dead MinIO node was coordinating stays locked
            # inside MinIO for a minute or two; a request on it must end as a 503 (the client
            # retries) rather than hang that long. A read that timed out is not retried here.
            timeout=urllib3.Timeout(connect=3.0, read=settings.minio_timeout),
            # Not MinIO's `Retry-After`: it says 60 on every 503, and a request would sleep
            # a minute inside the pool (the client hears 503 and retries sooner on its own).
            retries=urllib3.Retry(total=2, read=0, backoff_factor=0.2,
                                  status_forcelist=[500, 502, 503, 504],
                                  respect_retry_after_header=False),
        )
        self.client = client or self._client(self.http)
        # Lock generations and heartbeats: a few seconds, no retry (the caller moves on to a
        # new key or asks again); a separate pool, so they never queue behind chunk traffic.
        self.quick_http = CountingPool(maxsize=64, timeout=QUICK, retries=False)
        self.quick = self._client(self.quick_http) if client is None else client
        # Deletes on the request path (a release's superseded lock generations): a second at
        # most, then they are left to a background chore.
        self.tidy_http = CountingPool(maxsize=16, timeout=TIDY, retries=False)
        self.tidy = self._client(self.tidy_http) if client is None else client
        self._credentials = Credentials(settings.minio_access_key, settings.minio_secret_key)

    def _client(self, pool: urllib3.PoolManager) -> Minio:
        client = Minio(self.settings.minio_endpoint, access_key=self.settings.minio_access_key,
                       secret_key=self.settings.minio_secret_key,
                       secure=self.settings.minio_secure, region=self.settings.minio_region,
                       http_client=pool)
        if self.settings.minio_addressing_style == "path":
            client.disable_virtual_style_endpoint()
        elif self.settings.minio_addressing_style == "virtual":
            client.enable_virtual_style_endpoint()
        return client

    def location(self, upload_id: str) -> tuple[str, str]:
        return location(self.settings, upload_id)

    # ----------------------------------------------------------------- conditional PUTs
    def put_in_bucket(self, bucket: str, key: str, body, headers: dict,
                      if_match: Optional[str] = None, if_none_match: bool = False,
                      query: Optional[dict] = None, context: str = "") -> Optional[str]:
        """PUT `body` to `bucket`/`key` with an S3 precondition, signed in its headers: the new
        ETag, or None when the precondition failed (404: If-Match on an object that is gone).

        Sent again only when MinIO refused it for want of drives (`REFUSED_PAUSES`): such a
        PUT stored nothing, or MinIO undid it. No other retry: a retried write of a system
        record (a usage count, an outbox entry) could find its own first attempt, call it
        another's and apply its change twice.
        """
        return self._etag_or_none(self._put(bucket, key, body, headers, if_match,
                                            if_none_match, query, context), key, context)

    def put_if(self, upload_id: str, key: str, body, headers: dict,
               if_match: Optional[str] = None, if_none_match: bool = False,
               query: Optional[dict] = None, quick: bool = False,
               timeout: Optional[urllib3.Timeout] = None) -> Optional[str]:
        """`put_in_bucket` for an object of an upload; UploadNotFound once its bucket is gone.
        `quick`: with the short timeout of `QUICK`; `timeout`: this one instead.

        Also sent again after a balancer's 502 (`no_node_answered`): every object of an upload
        is a new key or names its writer, and each of its writers knows its own first try
        when a second one finds it (412): a state generation by its bytes, a piece by its
        CRC32C, a chunk by the claim that replaces it, a lock generation by its holder."""
        response = self._put(self.location(upload_id)[0], key, body, headers, if_match,
                             if_none_match, query, upload_id, quick, timeout,
                             own_first_try_known=True)
        if response.status == 404 and b"NoSuchKey" not in response.data:
            raise UploadNotFound(upload_id)  # the bucket is gone: the upload was terminated
        return self._etag_or_none(response, key, upload_id)

    def put_quickly(self, bucket: str, key: str, body: bytes, headers: dict,
                    pauses: tuple = REFUSED_PAUSES, context: str = "") -> int:
        """A plain PUT with the short timeout of `QUICK`, sent again after each of `pauses`
        while MinIO refuses it for want of drives: the answer's status."""
        return self._put(bucket, key, body, headers, None, False, None, context, quick=True,
                         pauses=pauses, own_first_try_known=True).status

    def _put(self, bucket: str, key: str, body, headers: dict, if_match: Optional[str],
             if_none_match: bool, query: Optional[dict], context: str, quick: bool = False,
             timeout: Optional[urllib3.Timeout] = None, pauses: tuple = REFUSED_PAUSES,
             own_first_try_known: bool = False):
        headers = dict(headers)
        if if_none_match:
            headers["If-None-Match"] = "*"
        if if_match:
            headers["If-Match"] = f'"{if_match}"'
        pool = self.quick_http if quick else self.http
        own_timeout = {} if timeout is None else {"timeout": timeout}  # else the pool's
        replayable = isinstance(body, (bytes, bytearray, memoryview))
        pauses = iter(pauses)
        while True:
            with storage_errors(context):
                signed = dict(headers)
                url = self._signed_put(bucket, key, signed, query)
                response = pool.request("PUT", url, body=body, headers=signed, retries=False,
                                        **own_timeout)
            again = refused_for_quorum(response) or \
                (own_first_try_known and no_node_answered(response))
            pause = next(pauses, None) if replayable and again else None
            if pause is None:
                return response
            log.info("PUT refused (%d %s), sent again in %.2f s upload_id=%s key=%s",
                     response.status, error_code(response), pause, context, key)
            time.sleep(pause)

    def _signed_put(self, bucket: str, key: str, headers: dict, query: Optional[dict]) -> str:
        """Sign a PUT in its headers (added to `headers`), once; its URL.

        The region and the URL (path or virtual-host style) are minio-py's, found as its own
        requests find them (`Minio._url_open`). minio-py 7.2 has no public call that gives
        them without signing: `get_presigned_url` computed a query-string signature only to
        have it dropped. So its private `_get_region` (MINIO_REGION, else a GetBucketLocation
        once per bucket, cached by the client) and `_base_url.build`; minio is pinned in
        requirements.txt, and the storage tests fail on a wrong host or region (403)."""
        client = self.client
        region = client._get_region(bucket)
        url = client._base_url.build(
            method="PUT", region=region, bucket_name=bucket, object_name=key,
            query_params=query)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        headers.update({"Host": url.netloc, "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"),
                        "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
        signed = {name: value for name, value in headers.items()
                  if name.lower() == "host" or name.lower().startswith("x-amz-")}
        sign_v4_s3(method="PUT", url=url, region=region, headers=signed,
                   credentials=self._credentials, content_sha256="UNSIGNED-PAYLOAD", date=now)
        headers["Authorization"] = signed["Authorization"]
        return urlunsplit(url)

    @staticmethod
    def _etag_or_none(response, key: str, context: str) -> Optional[str]:
        if response.status in (200, 201):
            return response.headers.get("ETag", "").strip('"')
        if response.status in (404, 409, 412):
            return None
        code = error_code(response)
        code = f" {code}" if code else ""
        log.warning("PUT answered %d%s upload_id=%s key=%s", response.status, code, context, key)
        raise StorageUnavailable(f"PUT answered {response.status}{code}")

    def conditional_put(self, upload_id: str, name: str, data: bytes,
                        if_match: Optional[str] = None, if_none_match: bool = False,
                        timeout: Optional[urllib3.Timeout] = None):
        """A small JSON object of the upload (lock, info) under a precondition."""
        return self.put_if(upload_id, self.location(upload_id)[1] + name, data,
                           {"Content-Type": "application/json"}, if_match, if_none_match,
                           timeout=timeout)

    # ----------------------------------------------------------------- small objects
    def read_object(self, upload_id: str, name: str,
                    quick: bool = False) -> tuple[Optional[bytes], Optional[str]]:
        """(bytes, ETag) of an upload's object, (None, None) when it does not exist; `quick`:
        with the short timeout of `QUICK` (a small object: a state generation)."""
        bucket, prefix = self.location(upload_id)
        return self.read_in_bucket(bucket, prefix + name, upload_id, quick)

    def read_in_bucket(self, bucket: str, key: str, label: str,
                       quick: bool = False) -> tuple[Optional[bytes], Optional[str]]:
        """(bytes, ETag) of `key` in `bucket`, (None, None) when it does not exist; `label`
        names the object in storage errors."""
        try:
            with storage_errors(label):
                response = (self.quick if quick else self.client).get_object(bucket, key)
                try:
                    return response.read(), response.headers.get("ETag", "").strip('"')
                finally:
                    response.close()
                    response.release_conn()
        except UploadNotFound:
            return None, None

    def list_quickly(self, bucket: str, prefix: str, limit: int, context: str = "") -> list[str]:
        """The first `limit` object names under `prefix` (S3 lists in name order), asked with
        the short timeout of lock and heartbeat requests."""
        return [name for name, _ in self.list_dated_quickly(bucket, prefix, limit, context)]

    def list_dated_quickly(self, bucket: str, prefix: str, limit: int,
                           context: str = "") -> list[tuple[str, Optional[datetime]]]:
        """`list_quickly` with each object's LastModified as listed (milliseconds on MinIO
        and AWS, where a HEAD's `Last-Modified` has whole seconds)."""
        found: list[tuple[str, Optional[datetime]]] = []
        with storage_errors(context):
            for obj in self.quick.list_objects(bucket, prefix=prefix):
                found.append((obj.object_name, obj.last_modified))
                if len(found) >= limit:
                    break
        return found

    def list_meta_quickly(self, bucket: str, prefix: str, limit: int, meta: str,
                          context: str = "") -> list[tuple[str, Optional[str]]]:
        """The first `limit` (name, value of user metadata `x-amz-meta-<meta>`) under
        `prefix`, with the short timeout. MinIO lists user metadata (its `metadata=true`
        extension of ListObjectsV2); a server that does not leaves the value None, and
        `meta_quickly` asks for it."""
        wanted = {f"x-amz-meta-{meta}", meta}
        found: list[tuple[str, Optional[str]]] = []
        with storage_errors(context):
            for obj in self.quick.list_objects(bucket, prefix=prefix, include_user_meta=True):
                value = next((v for k, v in (obj.metadata or {}).items()
                              if k.lower() in wanted), None)
                found.append((obj.object_name, value))
                if len(found) >= limit:
                    break
        return found

    def meta_quickly(self, bucket: str, key: str, meta: str, context: str = "") -> Optional[str]:
        """User metadata `x-amz-meta-<meta>` of one object (a HEAD, short timeout); raises
        UploadNotFound when the object is gone."""
        with storage_errors(context):
            return self.quick.stat_object(bucket, key).metadata.get(f"x-amz-meta-{meta}")

    def remove_keys_quickly(self, bucket: str, keys: list[str], context: str = "") -> bool:
        """Delete objects in one request, given up after a second (`TIDY`); False when some
        were not deleted (the caller leaves them to a background chore)."""
        return not keys or self._remove(self.tidy, bucket, keys, context) == []

    def remove_quickly(self, bucket: str, key: str) -> None:
        """Delete one object with the short timeout (background tidying)."""
        with storage_errors(bucket):
            self.quick.remove_object(bucket, key)

    def stored_crc32c(self, upload_id: str, key: str) -> Optional[str]:
        """The CRC32C MinIO keeps for `key` of an upload (as S3 spells it), None when the object
        is gone or has none."""
        bucket = self.location(upload_id)[0]
        try:
            with storage_errors(upload_id):
                found = self.client.stat_object(bucket, key, extra_headers=CHECKSUM_MODE)
        except UploadNotFound:
            return None
        return found.metadata.get(CRC32C_HEADER)

    def object_etag(self, upload_id: str, key: str) -> Optional[str]:
        bucket = self.location(upload_id)[0]
        try:
            with storage_errors(upload_id):
                return self.client.stat_object(bucket, key).etag.strip('"')
        except UploadNotFound:
            return None

    def remove_object(self, upload_id: str, name: str) -> None:
        bucket, prefix = self.location(upload_id)
        try:
            with storage_errors(upload_id):
                self.client.remove_object(bucket, prefix + name)
        except UploadNotFound:
            pass

    def list_names(self, upload_id: str, under: str = "",
                   limit: Optional[int] = None) -> list[str]:
        """Names (relative to the upload's prefix) under `under`, in key order; one LIST
        request while `limit` is at most 1000. Raises UploadNotFound when the bucket is gone."""
        bucket, prefix = self.location(upload_id)
        names = []
        with storage_errors(upload_id):
            for obj in self.client.list_objects(bucket, prefix=prefix + under, recursive=True):
                names.append(obj.object_name[len(prefix):])
                if limit is not None and len(names) >= limit:
                    break
        return names

    def remove_names(self, upload_id: str, names: list[str], patient: bool = False) -> bool:
        """Delete objects of an upload in one request (per 1000); best effort: False when
        some could not be deleted (they are garbage that termination removes later).

        With the short timeout unless `patient` (termination): a tidying delete on the request
        path that meets a key stuck inside MinIO gives up in seconds, not `TUS_MINIO_TIMEOUT`."""
        if not names:
            return True
        bucket, prefix = self.location(upload_id)
        errors = self._remove(self.client if patient else self.quick, bucket,
                              [prefix + name for name in names], upload_id)
        if errors:
            log.warning("could not delete %d objects upload_id=%s: %s", len(errors),
                        upload_id, errors[0])
        return errors == []

    def remove_names_later(self, upload_id: str, names: list[str]) -> None:
        """`remove_names` as a background chore (`chores.py`): garbage that no generation lists
        (old generations, dropped pieces) is deleted after the response. A multi-object delete
        that met a key the killed node of a distributed MinIO had locked held a PATCH up for
        its whole 3 s timeout, after its bytes and state were stored."""
        if names:
            chores.submit(lambda: self.remove_names(upload_id, names), attempts=5)

    @staticmethod
    def _remove(client: Minio, bucket: str, keys: list[str], context: str) -> Optional[list]:
        """One multi-object delete through `client`: the keys it could not delete, or None
        when the request itself failed (the bucket gone, MinIO unreachable)."""
        try:
            with storage_errors(context):
                return list(client.remove_objects(bucket, [DeleteObject(k) for k in keys]))
        except (UploadNotFound, StorageUnavailable):
            return None
