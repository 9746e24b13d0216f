"""MinIO requests a store sends, counted at every connection pool it has (the main one, and the
short-timeout ones of the lock and the tidying), for tests and `bench/round_trips.py`.

Heartbeats (`instances/` in the system bucket, and the clock HEAD) are one process's, not one
request's: they are counted apart, in `background`.
"""
from __future__ import annotations

import collections
from urllib.parse import urlsplit

from tus_server.storage.instances import CLOCK_KEY
from tus_server.storage.instances import PREFIX as INSTANCES_PREFIX
from tus_server.storage.minio_backend import MinioStore


class MinioRequests:
    def __init__(self, store: MinioStore):
        self.trail: list[str] = []  # "METHOD /path?query", in order
        self.sent: collections.Counter = collections.Counter()  # body bytes, by method
        self.background: collections.Counter = collections.Counter()  # heartbeats, by method
        system = store.settings.system_bucket
        self._beats = (f"/{system}/{INSTANCES_PREFIX}", f"/{system}/{CLOCK_KEY}")
        self._listing = "prefix=" + INSTANCES_PREFIX.rstrip("/")
        self._pools = [store.objects.http, store.objects.quick_http, store.objects.tidy_http]
        self._originals = [pool.urlopen for pool in self._pools]
        for pool, original in zip(self._pools, self._originals):
            pool.urlopen = self._counting(original)

    def _counting(self, original):
        def urlopen(method, url, *args, **kwargs):
            path, query = urlsplit(url).path, urlsplit(url).query
            if path.startswith(self._beats) or self._listing in query:
                self.background[method] += 1
            else:
                self.trail.append(f"{method} {path}{'?' + query if query else ''}")
                body = kwargs.get("body")
                if body is not None and hasattr(body, "__len__"):
                    self.sent[method] += len(body)
            return original(method, url, *args, **kwargs)
        return urlopen

    def since(self, mark: int) -> list[str]:
        """The requests after `mark` (a `len(self.trail)` taken earlier)."""
        return self.trail[mark:]

    def close(self) -> None:
        for pool, original in zip(self._pools, self._originals):
            pool.urlopen = original

    def __enter__(self) -> "MinioRequests":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
