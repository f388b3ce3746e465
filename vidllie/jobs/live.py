"""Live recording: enhance a camera/stream (or a file) into one file or rolling segments, and
finish the output cleanly when told to stop.

    stop = threading.Event()                     # set it (or send SIGTERM, see interrupts.py)
    stats = enhance_live(enhancer, "rtsp://cam/stream", "night.mkv", end=3600, segment=300,
                         stop=stop)

Differences from :func:`~vidllie.jobs.video_job.enhance_video_file` (files): ``start``/``end``
count from the first frame received (no seeking); a stop (``stop`` set) ends the input and
*finishes* the output with every frame processed so far and its audio; a dropped endless stream
is reopened (bounded retries) and the recording continues after the gap; ``segment`` seconds > 0
writes rolling, individually complete files named with their start time.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
import time
from typing import Any, Callable

from vidllie.video.live import LiveSource, SegmentWriter
from vidllie.video.writer import VideoWriter


def enhance_live(
    enhancer,
    src: str | os.PathLike,
    dst: str | os.PathLike,
    *,
    start: float | None = None,
    end: float | None = None,
    segment: float | None = None,
    stop: threading.Event | None = None,
    reconnect: int = 5,
    reconnect_wait: float = 2.0,
    codec: str | None = None,
    crf: int | None = 18,
    preset: str | None = "medium",
    pix_fmt: str | None = None,
    audio: bool = True,
    overwrite: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
    queue_size: int = 8,
    format: str | None = None,
    input_format: str | None = None,
    input_options: dict[str, str] | None = None,
    video_stream: int | None = None,
) -> dict[str, Any]:
    """Enhance a live input into ``dst`` (or ``segment``-second files beside it); stats dict.

    ``stats["live"]`` tells how it ended (``stopped_by``: "stop" | "end" | "input"), the
    reconnects and their gaps, and the segment files.
    """
    from vidllie.jobs.video_job import run_enhancement, run_stats

    enhancer.reset()
    enhancer.reset_stats()
    t_start = time.perf_counter()
    stop = stop or threading.Event()
    clock = _dt.datetime.now()
    source = LiveSource(src, start=start, end=end, stop=stop, reconnect=reconnect,
                        reconnect_wait=reconnect_wait, audio=audio, format=input_format,
                        options=input_options, video_stream=video_stream)
    try:
        info = source.info
        offset = source.origin  # stream time of the output's 0
        options = dict(codec=codec, crf=crf, preset=preset, pix_fmt=pix_fmt, audio=audio,
                       overwrite=overwrite, format=format)
        if segment:
            writer = SegmentWriter(dst, lambda: source.reader.info, segment, first_time=offset,
                                   clock=clock + _dt.timedelta(seconds=start or 0.0), **options)
        else:
            writer = VideoWriter(dst, info, time_offset=offset, **options)
        total = None
        if end is not None and info.fps:
            total = max(1, round((end - (start or 0.0)) * float(info.fps)))
        counts = run_enhancement(enhancer, source.stream(), writer, info, total=total,
                                 progress=progress, queue_size=queue_size)
    finally:
        source.close()
    segments = [str(p) for p in getattr(writer, "segments", [])]
    return run_stats(
        enhancer, counts, t_start, source=source.reader.source,
        output=segments if segment else str(writer.path), info=info, writer=writer, crf=crf,
        preset=preset, start=start, end=end, audio=audio,
        live={
            "stopped_by": source.stopped_by, "endless": source.endless,
            "reconnects": source.reconnects, "gaps_s": source.gaps, "segments": segments,
            "segment_seconds": segment,
        },
    )
