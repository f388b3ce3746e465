"""Decode thread -> compute loop -> encode thread, joined by bounded queues.

Host memory does not grow with the video: at most ``queue_size`` decoded items wait for the
compute loop and ``queue_size`` batches wait for the encoder. The model never waits on I/O while
the queues have work. Passthrough (audio) packets travel through the compute loop in demux order
and on to the encode thread: a PyAV output container is not thread-safe, so only the encode
thread touches the writer (write, mux, close, abort).

Any exception in any thread (and Ctrl-C in the main thread) stops all three, aborts the writer
(no file under the final name) and is re-raised in the caller's thread.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from vidllie.pipeline.timing import StageTimer
from vidllie.video import Frame, PassthroughPacket, VideoWriter

# process(images) -> (images_out (B, H, W, 3) array, ready) where ready() waits for the data.
ProcessFn = Callable[[list[np.ndarray]], "tuple[np.ndarray, Callable[[], None] | None]"]

_POLL = 0.1  # seconds between checks of the abort flag while blocked on a queue


class _Done:
    """End-of-stream marker."""


@dataclass
class _Failure:
    error: BaseException


@dataclass
class _Batch:
    images: np.ndarray
    ready: Callable[[], None] | None
    stamps: list[tuple[int, Fraction]]


@dataclass
class StreamCounts:
    frames_in: int = 0
    frames_out: int = 0
    packets: int = 0
    wait_decode_s: float = 0.0  # compute loop idle, waiting for decoded frames
    wait_encode_s: float = 0.0  # compute loop blocked, the encoder is behind
    extra: dict[str, Any] = field(default_factory=dict)


def _put(q: queue.Queue, item: Any, abort: threading.Event) -> bool:
    """Blocking put that gives up (False) when ``abort`` is set."""
    while not abort.is_set():
        try:
            q.put(item, timeout=_POLL)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, abort: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=_POLL)
        except queue.Empty:
            if abort.is_set():
                return _Done()


def run_stream(
    items: Iterable[Frame | PassthroughPacket],
    writer: VideoWriter,
    process: ProcessFn,
    *,
    batch_size: int,
    timer: StageTimer,
    queue_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> StreamCounts:
    """Stream ``items`` (a reader's ``stream()``) through ``process`` into ``writer``.

    ``process`` is called in the caller's thread on lists of up to ``batch_size`` same-sized
    images and must return as many images. On success the writer is closed (file renamed into
    place); on any failure it is aborted and the error re-raised. ``progress(n)`` is called from
    the encode thread after every n frames written.
    """
    abort = threading.Event()
    in_q: queue.Queue = queue.Queue(maxsize=max(2, queue_size) * max(1, batch_size))
    out_q: queue.Queue = queue.Queue(maxsize=max(2, queue_size))
    counts = StreamCounts()
    errors: list[BaseException] = []
    writer_done = threading.Event()

    def decode() -> None:
        it = iter(items)
        try:
            while not abort.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    break
                if isinstance(item, Frame):
                    timer.add("decode", time.perf_counter() - t0, 1)
                if not _put(in_q, item, abort):
                    return
            _put(in_q, _Done(), abort)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            _put(in_q, _Failure(err), abort)
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                try:
                    close()  # finish the reader's generator in this thread
                except Exception:  # noqa: BLE001
                    pass

    def encode() -> None:
        try:
            while True:
                item = _get(out_q, abort)
                if abort.is_set():  # another thread failed or Ctrl-C: drop the temp file, stop
                    writer.abort()
                    return
                if isinstance(item, _Done):
                    if abort.is_set():
                        writer.abort()
                    else:
                        writer.close()
                    return
                if isinstance(item, PassthroughPacket):
                    writer.mux(item)
                    continue
                if item.ready is not None:
                    item.ready()  # the device -> host copy of this batch has landed
                t0 = time.perf_counter()
                for image, (pts, tb) in zip(item.images, item.stamps):
                    writer.write(image, pts, tb)
                timer.add("encode", time.perf_counter() - t0, len(item.stamps))
                counts.frames_out += len(item.stamps)
                if progress is not None:
                    progress(len(item.stamps))
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            errors.append(err)
            abort.set()
            writer.abort()
        finally:
            writer_done.set()

    decoder = threading.Thread(target=decode, name="vidllie-decode", daemon=True)
    encoder = threading.Thread(target=encode, name="vidllie-encode", daemon=True)
    decoder.start()
    encoder.start()

    def flush(batch: list[Frame]) -> None:
        out, ready = process([f.image for f in batch])
        if len(out) != len(batch):
            raise RuntimeError(f"the enhancer returned {len(out)} frames for {len(batch)}")  # never drop
        t0 = time.perf_counter()
        ok = _put(out_q, _Batch(out, ready, [(f.pts, f.time_base) for f in batch]), abort)
        counts.wait_encode_s += time.perf_counter() - t0
        if not ok:
            raise errors[0] if errors else RuntimeError("the encoder stopped")

    try:
        batch: list[Frame] = []
        while True:
            t0 = time.perf_counter()
            item = _get(in_q, abort)
            counts.wait_decode_s += time.perf_counter() - t0
            if isinstance(item, _Failure):
                raise item.error
            if isinstance(item, _Done):
                if abort.is_set():
                    raise errors[0] if errors else RuntimeError("the encoder stopped")
                break
            if isinstance(item, PassthroughPacket):
                counts.packets += 1
                if not _put(out_q, item, abort):
                    raise errors[0] if errors else RuntimeError("the encoder stopped")
                continue
            counts.frames_in += 1
            # A batch holds frames of one size (a live source may change resolution).
            if batch and (item.image.shape != batch[0].image.shape or item.image.dtype != batch[0].image.dtype):
                flush(batch)
                batch = []
            batch.append(item)
            if len(batch) >= batch_size:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
        if not _put(out_q, _Done(), abort):
            raise errors[0] if errors else RuntimeError("the encoder stopped")
        while not writer_done.wait(_POLL):
            pass
        if errors:
            raise errors[0]
    except BaseException:
        abort.set()
        while not writer_done.wait(_POLL):
            if not encoder.is_alive():
                break
        if not encoder.is_alive() and not writer_done.is_set():
            writer.abort()
        raise
    finally:
        abort.set()  # releases the decode thread if it is blocked on a full queue
        decoder.join(timeout=10)
        encoder.join(timeout=10)
    if counts.frames_out != counts.frames_in:
        raise RuntimeError(f"{counts.frames_in} frames decoded but {counts.frames_out} written")
    return counts
