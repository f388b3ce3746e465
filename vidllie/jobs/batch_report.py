"""What a batch job shows and reports: the progress lines on stderr (whole job + one per worker),
the ``--stats-json`` summary, and the final table.

Used by :mod:`vidllie.jobs.batch`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


# ---------------------------------------------------------------------------- progress display
class JobProgress:
    """Whole-job line (files done, frames/s over all workers, ETA by input bytes) and one line per
    worker (its file, frames, fps), as tqdm bars on stderr."""

    def __init__(self, total_files: int, total_bytes: int, workers: int, enabled: bool = True) -> None:
        self.total_bytes, self.enabled = max(total_bytes, 1), enabled
        self.t0 = time.perf_counter()
        self.done_bytes, self.done_frames, self.files = 0, 0, 0
        self.bars: list[Any] = []
        if enabled and total_files:
            from tqdm import tqdm

            self.job = tqdm(total=total_files, desc="job", unit="file", file=sys.stderr, dynamic_ncols=True,
                            bar_format="{desc}: {n_fmt}/{total_fmt} files |{bar}|{postfix}")
        else:
            self.job = None
        self.add_workers(workers)

    def add_workers(self, n: int) -> None:
        """One line per worker (added once the pool's size is known)."""
        if self.job is None or self.bars:
            return
        from tqdm import tqdm

        self.bars = [tqdm(total=0, desc=f"worker {i}: starting", position=i + 1, file=sys.stderr, dynamic_ncols=True,
                          bar_format="{desc}", leave=False) for i in range(n)]

    def file_done(self, size: int | None, frames: int) -> None:
        self.files += 1
        self.done_bytes += size or 0
        self.done_frames += frames
        if self.job is not None:
            self.job.update(1)

    def update(self, snapshots: list[dict[str, Any]], sizes: dict[str, int | None]) -> dict[str, Any]:
        """Refresh from the workers' ``progress()``; returns the job's figures."""
        elapsed = time.perf_counter() - self.t0
        partial_bytes = sum((sizes.get(s["input"]) or 0) * min(1.0, s["frames"] / s["total"])
                            for s in snapshots if s.get("input") and s.get("total"))
        frames = self.done_frames + sum(s.get("frames", 0) for s in snapshots if s.get("input"))
        done = self.done_bytes + partial_bytes
        eta = (self.total_bytes - done) / (done / elapsed) if done > 0 and elapsed > 0 else None
        figures = {"files_done": self.files, "frames": frames, "fps": frames / elapsed if elapsed > 0 else 0.0,
                   "eta_seconds": eta}
        if self.job is not None:
            eta_text = "?" if eta is None else time.strftime("%H:%M:%S", time.gmtime(max(0.0, eta)))
            self.job.set_postfix_str(f"{figures['fps']:.2f} frames/s, ETA {eta_text}")
            for i, (bar, s) in enumerate(zip(self.bars, snapshots)):
                if s.get("input"):
                    fps = s["frames"] / max(1e-6, time.time() - s["started"]) if s.get("started") else 0.0
                    total = s["total"] if s.get("total") else "?"
                    bar.set_description_str(f"worker {i}: {Path(s['input']).name} {s['frames']}/{total} frames, {fps:.2f} fps")
                else:
                    bar.set_description_str(f"worker {i}: idle")
        return figures

    def close(self) -> None:
        for bar in self.bars:
            bar.close()
        if self.job is not None:
            self.job.close()


@dataclass
class BatchSummary:
    """What ``--stats-json`` writes for a batch job."""

    files: int
    done: int
    failed: int
    skipped: int
    frames: int
    wall_seconds: float
    fps: float
    files_per_hour: float
    workers: int
    gpus_per_worker: float
    cpus_per_worker: float | None
    manifest: str
    startup_seconds: float | None
    per_worker: dict[str, dict[str, Any]]
    rows: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The job's table: one line per file (what this run did, frames, seconds, fps, error) and totals.

    Example:
        >>> print(format_summary([{"input": "/a/x.mp4", "action": "enhanced", "status": "done",
        ...                        "frames": 30, "seconds": 2.0, "error": None}]))
        status       frames  seconds    fps  input
        enhanced         30      2.0  15.00  x.mp4
        1 files: 1 enhanced, 0 skipped, 0 failed
    """
    lines = [f"{'status':<11} {'frames':>7} {'seconds':>8} {'fps':>6}  input"]
    for r in rows:
        frames = r.get("frames") or 0
        secs = r.get("seconds")
        fps = f"{frames / secs:6.2f}" if secs and r.get("status") == "done" else f"{'':>6}"
        secs_text = f"{secs:8.1f}" if secs is not None else f"{'':>8}"
        err = f"  {r['error']}" if r.get("status") == "failed" and r.get("error") else ""
        lines.append(f"{r.get('action', r.get('status')):<11} {frames:>7} {secs_text} {fps}  {Path(r['input']).name}{err}")
    n = len(rows)
    counts = {k: sum(r.get("action") == k for r in rows) for k in ("enhanced", "skipped")}
    failed = sum(r.get("status") == "failed" for r in rows)
    lines.append(f"{n} files: {counts['enhanced']} enhanced, {counts['skipped']} skipped, {failed} failed")
    return "\n".join(lines)
