"""What a row costs the servers: CPU seconds of a process tree (psutil `cpu_times`, user +
system, summed over the root and its descendants) and its peak RSS (sampled every 50 ms,
summed over the tree)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional

import psutil


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def tree_cpu(pid: Optional[int], recursive: bool = True) -> float:
    """User + system CPU seconds of a process (and its descendants) so far. A worker that
    exited during the row takes its seconds with it; gunicorn's workers live for the run."""
    if pid is None:
        return 0.0
    processes = _tree(pid) if recursive else _tree(pid)[:1]
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def tree_rss(pid: Optional[int]) -> int:
    """Summed RSS in bytes of a process and its descendants."""
    if pid is None:
        return 0
    total = 0
    for process in _tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


class RssSampler:
    """Peak summed RSS of each named process tree while a block runs."""

    def __init__(self, pids: dict[str, Optional[int]], interval: float = 0.05):
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.interval = interval
        self.baseline: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            self.peak[name] = max(self.peak.get(name, 0), tree_rss(pid))

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> "RssSampler":
        self.baseline = {name: tree_rss(pid) for name, pid in self.pids.items()}
        self.peak = dict(self.baseline)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()


class Meter:
    """Wall time, CPU seconds of each named process tree, and their peak RSS over a block.

    `pids` names the trees: e.g. {"server": gunicorn master, "minio": MinIO}; the client
    (this process, without children) is always measured as "client"."""

    def __init__(self, pids: dict[str, Optional[int]], sample_rss: Iterable[str] = ("server",)):
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}
        self.rss = RssSampler({n: self.pids.get(n) for n in sample_rss})
        self.cpu: dict[str, float] = {}
        self.wall = 0.0

    def _cpu(self) -> dict[str, float]:
        sample = {name: tree_cpu(pid) for name, pid in self.pids.items()}
        sample["client"] = tree_cpu(os.getpid(), recursive=False)
        return sample

    def __enter__(self) -> "Meter":
        self.rss.__enter__()
        self._start = self._cpu()
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._t0
        end = self._cpu()
        self.rss.__exit__(*exc)
        self.cpu = {name: end[name] - self._start.get(name, 0.0) for name in end}

    @property
    def server_cpu(self) -> float:
        return self.cpu.get("server", 0.0)

    @property
    def server_peak_rss(self) -> int:
        return self.rss.peak.get("server", 0)


class PySpy:
    """`--profile`: py-spy samples the app (gunicorn master and its workers) while a block
    runs, writing the raw collapsed stacks and a "top" summary (self and inclusive samples
    per function) to `out_dir`."""

    def __init__(self, pid: int, out_dir: Path):
        self.pid = pid
        self.out_dir = out_dir
        self.binary = shutil.which("py-spy", path=os.path.dirname(sys.executable)) or "py-spy"

    @contextmanager
    def __call__(self, label: str):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        raw = self.out_dir / f"profile-{label}.raw.txt"
        log = open(self.out_dir / f"profile-{label}.log", "wb")
        proc = subprocess.Popen(
            [self.binary, "record", "--pid", str(self.pid), "--subprocesses", "--format", "raw",
             "--rate", "250", "--nonblocking", "--output", str(raw)],
            stdout=log, stderr=subprocess.STDOUT)
        time.sleep(1.5)  # attached before the work starts
        try:
            yield
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
        if raw.exists():
            (self.out_dir / f"profile-{label}.top.txt").write_text(top_summary(raw, label))


def top_summary(raw: Path, label: str, limit: int = 30) -> str:
    """py-spy's raw (collapsed) stacks as two "top" tables: where samples were taken (self)
    and which functions were on the stack (inclusive), per function (line numbers folded)."""
    own: Counter = Counter()
    inclusive: Counter = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")
                  if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    by_file: Counter = Counter()
    for frame, samples in own.items():
        match = re.search(r"\(([^()]*)\)$", frame)
        by_file[match.group(1) if match else frame] += samples
    out = [f"py-spy top, {label}: {total} samples of busy threads (gunicorn master + workers)", ""]
    for title, counter in (("self, by file", by_file), ("self", own), ("inclusive", inclusive)):
        out.append(f"{title:>9}  " + ("file" if title.endswith("file") else "function (file)"))
        for frame, samples in counter.most_common(limit):
            out.append(f"{100 * samples / max(total, 1):8.1f}%  {frame}")
        out.append("")
    return "\n".join(out)
