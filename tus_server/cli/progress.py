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

    def __init__(self, total: Optional[int], initial: int, name: str, quiet: bool):
        super().__init__(total=total, initial=initial, unit="B", desc=name[:30], file=sys.stderr,
                         bar_format=WITH_TOTAL if total is not None else WITHOUT_TOTAL,
                         disable=True if quiet else None)

    @property
    def format_dict(self):
        values = super().format_dict
        if self.disable:
            return values
        rate = values.get("rate")
        elapsed = values.get("elapsed") or 0
        if rate is None and elapsed > 0:
            rate = (values["n"] - values.get("initial", 0)) / elapsed
        values["done"] = format_bytes(values["n"])
        values["whole"] = format_bytes(values["total"]) if values["total"] is not None else "?"
        values["speed"] = format_rate(rate)
        return values
