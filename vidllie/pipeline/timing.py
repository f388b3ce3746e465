"""Per-stage timing that is honest on CUDA, shared by ``enhance`` and ``bench``.

On CUDA, kernels run asynchronously: a host clock around ``model(x)`` measures the launch, not the
work. Device stages are therefore timed with CUDA events recorded on the current stream and read
back lazily (no synchronisation per stage, so timing does not slow the pipeline down). Host stages
(decode, encode, and everything on CPU) use ``time.perf_counter``. A host stage whose work runs
on the calling thread alone (``on_thread=True``: the small stages on one torch thread) also
records that thread's CPU time, so a slow stage on a busy machine shows whether it did more work
or waited for a CPU. Several threads may record into one timer (the decode and encode threads
each own their stages)::

    timer = StageTimer(torch.device("cpu"))
    with timer.stage("model", frames=4):
        y = model(x)
    timer.summary()["model"]["seconds"]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch

# Stages of the enhancement pipeline, in data order (``bench`` reports the same names).
STAGES = ("decode", "upload", "hdr_in", "scene", "dino", "model", "exposure", "smoothing", "hdr_out", "download", "encode")


class StageTimer:
    """Accumulates seconds and frame counts per named stage.

    ``device`` decides how ``stage(..., device=True)`` blocks are timed: CUDA events on a CUDA
    device, the host clock otherwise. ``stage(..., device=False)`` always uses the host clock
    (for work that does not touch the GPU, e.g. decoding in another thread).
    """

    # Read back finished CUDA events once this many are pending, to bound the list.
    _MAX_PENDING = 512

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._cuda = self.device.type == "cuda"
        self._lock = threading.Lock()
        self._seconds: dict[str, float] = {}
        self._frames: dict[str, int] = {}
        self._calls: dict[str, int] = {}
        self._cpu: dict[str, float] = {}
        self._pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []

    def add(self, name: str, seconds: float, frames: int = 0, cpu_seconds: float | None = None) -> None:
        """Record ``seconds`` of work on ``frames`` frames under ``name`` (thread-safe), and
        ``cpu_seconds`` of the thread's CPU time when given."""
        with self._lock:
            self._seconds[name] = self._seconds.get(name, 0.0) + seconds
            self._frames[name] = self._frames.get(name, 0) + frames
            self._calls[name] = self._calls.get(name, 0) + 1
            if cpu_seconds is not None:
                self._cpu[name] = self._cpu.get(name, 0.0) + cpu_seconds

    @contextmanager
    def stage(self, name: str, frames: int = 0, *, device: bool = True, on_thread: bool = False) -> Iterator[None]:
        """Time the enclosed block as stage ``name``; ``on_thread``: its work runs on this thread
        only, so its thread CPU time is recorded too (host clock only)."""
        if self._cuda and device:
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            try:
                yield
            finally:
                end.record()
                with self._lock:
                    self._frames[name] = self._frames.get(name, 0) + frames
                    self._calls[name] = self._calls.get(name, 0) + 1
                    self._seconds.setdefault(name, 0.0)
                    self._pending.append((name, start, end))
                    if len(self._pending) > self._MAX_PENDING:
                        self._drain(block=False)
            return
        c0 = time.thread_time() if on_thread else None
        t0 = time.perf_counter()
        try:
            yield
        finally:
            wall = time.perf_counter() - t0
            self.add(name, wall, frames, None if c0 is None else time.thread_time() - c0)

    def _drain(self, block: bool) -> None:
        # Caller holds the lock. Events complete in stream order, so stop at the first unfinished.
        done = 0
        for name, start, end in self._pending:
            if not block and not end.query():
                break
            end.synchronize()
            self._seconds[name] += start.elapsed_time(end) / 1000.0
            done += 1
        del self._pending[:done]

    def seconds(self, name: str) -> float:
        """Total seconds of stage ``name`` so far (waits for its pending CUDA events)."""
        with self._lock:
            self._drain(block=True)
            return self._seconds.get(name, 0.0)

    def summary(self) -> dict[str, dict[str, float | int]]:
        """``{stage: {"seconds", "frames", "calls", "ms_per_frame"}}`` in pipeline order, plus
        ``"cpu_ms_per_frame"`` (the thread's CPU time) for stages timed ``on_thread``."""
        with self._lock:
            self._drain(block=True)
            names = [s for s in STAGES if s in self._seconds]
            names += sorted(set(self._seconds) - set(STAGES))
            out: dict[str, dict[str, float | int]] = {}
            for name in names:
                secs, frames = self._seconds[name], self._frames.get(name, 0)
                out[name] = {
                    "seconds": round(secs, 6),
                    "frames": frames,
                    "calls": self._calls.get(name, 0),
                    "ms_per_frame": round(1000.0 * secs / frames, 3) if frames else None,
                }
                if name in self._cpu and frames:
                    out[name]["cpu_ms_per_frame"] = round(1000.0 * self._cpu[name] / frames, 3)
            return out
