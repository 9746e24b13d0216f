"""How a worker's C allocator treats the pieces a download passes through.

A download reads each chunk from MinIO in 1 MiB pieces (`storage/reader.py`), each a fresh
`bytes` that lives until it is sent: a steady churn of same-sized blocks. glibc's malloc gives
the top of its heap back to the kernel once more than `M_TRIM_THRESHOLD` is free there (by
default twice its sliding mmap threshold, here about 2 MiB), so between two chunks the freed
pieces went back and the next ones came in as fresh pages: about 80,000 page faults per GiB
served, each a zeroed 4 KiB page, 20-25% of the worker's CPU per GiB (docs/benchmarks.md).

`keep_freed_memory` sets both thresholds once per worker: blocks below `MMAP_THRESHOLD` come
from the heap, and up to `TRIM_THRESHOLD` of freed heap stays mapped for the next pieces. The
cost is at most that much resident memory kept after a burst. Elsewhere than glibc (musl, macOS)
it does nothing. The writer's chunk buffers are `mmap` mappings of their own, not affected.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("tus_server.ops")

# mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# Freed heap kept for reuse, and the size from which a block gets a mapping of its own.
TRIM_THRESHOLD = 32 * 1024 * 1024
MMAP_THRESHOLD = 4 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Set glibc's trim and mmap thresholds for this process; False where that is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
        libc.gnu_get_libc_version  # only glibc has it (and a mallopt with these parameters)
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and \
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    if not done:
        log.warning("mallopt refused the download buffer thresholds; downloads cost more CPU")
    return done
