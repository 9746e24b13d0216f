"""The storage side of tus-minio, one module per job; `minio_backend.MinioStore` composes them.

    store          the `Store` protocol the HTTP layer uses, `UploadInfo`, the storage errors
    layout    where an upload's objects live and what they are called
    objects   the S3 requests themselves: conditional PUTs, reads, errors
    lease     the per-upload lock (write-once generations) and the hand-over between requests
    lock_generations  the lock's generation objects: key, label, one look, one write
    kept_locks  a PATCH's lock and state kept a moment for the client's next PATCH
    instances the per-process heartbeats that say whether a lock's holder is alive
    chores    best-effort background tidying (lock generations a release could not delete, heartbeats)
    writer    a PATCH body cut into chunk objects, every write fenced
    reader    a finished upload's bytes, chunk by chunk, each chunk verified
    digests   the whole file's SHA-256: kept running while bytes arrive, or computed later
"""
