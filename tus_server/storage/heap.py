"""How a worker's C allocator treats the pieces a download passes through (`reader.py`).

A download reads each chunk from MinIO in 1 MiB pieces (`storage/reader.py`), each a fresh
`bytes` that lives until it is sent: a steady churn of same-sized blocks. glibc's malloc gives
the top of its heap back to the kernel once more than `M_TRIM_THRESHOLD` is free there (by
default twice its sliding mmap threshold, here about 2 MiB), so between two chunks the freed
pieces went back and the next ones came in as fresh pages: about 80,000 page faults per GiB
served, each a zeroed 4 KiB page, 20-25% of the worker's CPU per GiB (docs/benchmarks.md).

`keep_freed_memory` sets both thresholds once per worker (gunicorn's `post_worker_init`):
blocks below `MMAP_THRESHOLD` come from the heap, and up to `TRIM_THRESHOLD` of freed heap
stays mapped for the next pieces while downloads run. When the last download of the process
ends, `give_back_freed_memory` hands the free heap back to the kernel (`malloc_trim`), so an
idle worker's resident memory is what it was (the leak check of docs/benchmarks.md). Elsewhere
than glibc (musl, macOS) both do nothing. The writer's chunk buffers are `mmap` mappings of
their own, not affected.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Optional

log = logging.getLogger("tus_server.store")

# mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Freed heap kept for reuse, and the size from which a block gets a mapping of its own.
TRIM_THRESHOLD = 32 * 1024 * 1024
MMAP_THRESHOLD = 4 * 1024 * 1024


_glibc: Optional[ctypes.CDLL] = None
_set = False  # keep_freed_memory took effect in this process


def _libc() -> Optional[ctypes.CDLL]:
    """glibc, or None (another C library, or none found)."""
    global _glibc
    if _glibc is None:
        name = ctypes.util.find_library("c")
        if not name:
            return None
        try:
            libc = ctypes.CDLL(name)
            libc.gnu_get_libc_version  # only glibc has it (and a mallopt with these parameters)
            libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            libc.malloc_trim.argtypes = [ctypes.c_size_t]
        except (OSError, AttributeError):
            return None
        _glibc = libc
    return _glibc


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds for this process; False where that is not glibc."""
    global _set
    libc = _libc()
    if libc is None:
        return False
    _set = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and \
        libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not _set:
        log.warning("mallopt refused the download buffer thresholds; downloads cost more CPU")
    return _set


def give_back_freed_memory() -> None:
    """Return the heap's free memory to the kernel (after `keep_freed_memory` only: otherwise
    glibc trims on its own)."""
    if _set:
        _libc().malloc_trim(0)
