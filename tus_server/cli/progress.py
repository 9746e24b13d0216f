"""The progress bar of `upload` and `download`, in the CLI's one unit system (KiB, MiB, GiB).

tqdm's own `unit_scale=True, unit_divisor=1024` divides by 1024 but labels the result `MB`
and `MB/s`; these bars print sizes and speeds through `format_bytes`/`format_rate`, so a
label always says what was counted.
"""
from __future__ import annotations

import sys
from typing import Optional

from tqdm import tqdm

from .common import format_bytes, format_rate

WITH_TOTAL = "{desc}: {percentage:3.0f}%|{bar}| {done} / {whole} [{elapsed}<{remaining}, {speed}]"
WITHOUT_TOTAL = "{desc}: {done} [{elapsed}, {speed}]"


class Progress(tqdm):
    """A byte-counting bar on stderr (hidden when stderr is not a terminal, or with -q)."""

    def __init__(self, total: Optional[int], initial: int, name: str, quiet: bool, file=None):
        """`file` other than stderr (a test's buffer) always shows the bar unless `quiet`."""
        super().__init__(total=total, initial=initial, unit="B", desc=name[:30],
                         file=file or sys.stderr,
                         bar_format=WITH_TOTAL if total is not None else WITHOUT_TOTAL,
                         disable=True if quiet else (None if file is None else False))

    @property
    def format_dict(self):
        values = super().format_dict  # also drawn once more by close(), with `disable` set
        n, total = values.get("n") or 0, values.get("total")
        rate, elapsed = values.get("rate"), values.get("elapsed") or 0
        if rate is None and elapsed > 0:
            rate = (n - (values.get("initial") or 0)) / elapsed
        values["done"] = format_bytes(n)
        values["whole"] = format_bytes(total) if total is not None else "?"
        values["speed"] = format_rate(rate)
        return values
