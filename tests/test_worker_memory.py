"""Download pieces reuse freed heap in a worker (tus_server/storage/heap.py): 1 MiB `bytes` made
and dropped over and over fault in no fresh pages once the thresholds are set."""
from __future__ import annotations

import platform
import resource

import pytest

from tus_server.storage.heap import give_back_freed_memory, keep_freed_memory

PIECE = 1024 * 1024


def pieces_churned(rounds: int = 8, held: int = 16) -> int:
    """Minor page faults while `held` pieces are made, dropped, and made again `rounds` times
    (as a download's chunks pass through)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for round_ in range(rounds):
        pieces = [bytes([round_]) * PIECE for _ in range(held)]
        assert all(len(piece) == PIECE for piece in pieces)
        del pieces
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_pieces_are_reused_not_faulted_in_again():
    assert keep_freed_memory() is True
    pieces_churned()  # the heap grows once
    pages_per_round = 16 * PIECE // resource.getpagesize()
    # Given back and faulted in again, each round would cost all its pages (4,096 here).
    assert pieces_churned() < pages_per_round


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_the_kept_heap_is_given_back_when_downloads_end():
    assert keep_freed_memory() is True
    pieces = [bytes([7]) * PIECE for _ in range(24)]
    del pieces  # 24 MiB free in the heap, below the trim threshold: kept
    kept = resident_bytes()
    give_back_freed_memory()
    assert resident_bytes() <= kept - 16 * PIECE
